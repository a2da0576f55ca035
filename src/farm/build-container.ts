import { PassThrough } from 'node:stream';
import { DKMS_TREE, SOURCE_TREE } from '../dkms/paths.js';
import type { ScriptRunner } from '../dkms/evaluate.js';
import { Label, type Engine, type EngineContainer, type VolumeMount } from '../engine/index.js';
import { KfarmError, errorText } from '../model/errors.js';
import { runtimeScripts } from '../dkms/runtime.js';
import { outputLimits } from '../model/limits.js';
import { TextTail } from '../util/text-tail.js';
import { collectOutput, type Collected } from './collect.js';
import type { FarmSettings } from './options.js';

/** Where the source arrives in a build container, and where results leave from. */
export const CONTAINER_SOURCE = '/kfarm/src';

/**
 * A builder container: no network, no capabilities, resource limits, and a main process that ends by itself
 * (an orphaned builder of a killed kfarm outlives it by at most its targets' limits; its agent stops it sooner,
 * when kfarm's connection goes). Its root file system is read-only; what a build can write are in-memory
 * mounts of `--disk` bytes each (the DKMS tree where it builds, /usr/src where DKMS keeps sources, /tmp, /kfarm
 * for the source and the results, the module directories that hold each kernel's build link and what a
 * `--with-module` installs) and a few small ones (/root, /var/tmp, /run), all counted against the memory
 * limit: a Makefile that writes 20 GB fills its mount, not the host's disk, and removing
 * the container deletes nothing file by file. Headers come in read-only volumes.
 */
export function startBuildContainer(
  engine: Engine,
  image: string,
  settings: FarmSettings,
  signal: AbortSignal,
  builder: { volumes: VolumeMount[]; moduleDirs: string[]; targets: number },
) {
  const sized = (bytes: number, exec: boolean) => `rw,${exec ? 'exec' : 'noexec'},nosuid,nodev,size=${bytes}`;
  const disk = settings.limits.diskBytes;
  // Each target's own limit plus, at most, a wait for a build slot as long as another target's limit.
  const lifetime = builder.targets * (2 * Math.ceil(settings.timeoutMs / 1000) + 60);
  return engine.start(
    {
      image,
      cmd: ['sh', '-c', `trap 'exit 0' TERM; sleep ${lifetime} & wait`],
      network: 'none',
      hardened: true,
      readOnlyRoot: true,
      limits: settings.limits,
      tmpfs: {
        [DKMS_TREE]: sized(disk, true),
        // The headers volumes mount on top, at /usr/src/linux-headers-…: engines mount parents first.
        [SOURCE_TREE]: sized(disk, true),
        '/tmp': sized(disk, true),
        '/kfarm': sized(disk, false),
        '/root': sized(SMALL_MOUNT, false),
        '/var/tmp': sized(SMALL_MOUNT, false),
        '/run': sized(SMALL_MOUNT, false),
        ...Object.fromEntries(builder.moduleDirs.map((dir) => [dir, sized(disk, false)])),
      },
      volumes: builder.volumes,
      labels: { [Label.role]: 'build', [Label.target]: image },
    },
    signal,
  );
}

/** Home, /var/tmp and /run of a build: room for lock and dot files, nothing more. */
const SMALL_MOUNT = 64 * 1024 ** 2;

/** Where the build may write, for telling a full disk limit from other failures. */
const WRITABLE_MOUNTS = [DKMS_TREE, SOURCE_TREE, '/tmp', '/kfarm'] as const;

/**
 * Each target starts from a builder as fresh as a new one: what targets before it left (processes, files in
 * the writable mounts) is removed, and /kfarm/src is copied afresh from the source the builder got once.
 */
export async function resetBuilder(container: EngineContainer, signal: AbortSignal): Promise<void> {
  const stderr = new TextTail();
  const script = (await runtimeScripts()).builder;
  const code = await container.exec(['bash', '-c', script, 'builder', 'reset'], { stderr, signal });
  if (code !== 0)
    throw new KfarmError(
      'KFARM_ENGINE_ERROR',
      `resetting the builder failed (exit ${code}: ${stderr.lastLine() || 'no message'})`,
    );
}

/**
 * The build's results come out as `tar -c` of /kfarm/out on stdout, read as untrusted (collectOutput
 * accepts only allow-listed regular files and stops at the first bad entry, which also stops the tar).
 */
export async function copyResultsOut(
  container: EngineContainer,
  stageDir: string,
  signal: AbortSignal,
): Promise<Collected> {
  const archive = new PassThrough();
  const stop = new AbortController();
  const stderr = new TextTail();
  const script = (await runtimeScripts()).collect;
  const exec = container.exec(['/bin/bash', '-c', script, 'kfarm-collect', String(outputLimits.logBytes)], {
    stdout: archive,
    stderr,
    signal: AbortSignal.any([signal, stop.signal]),
  });
  // Settled for good: what the exec came to, its exit code or why it could not run.
  const ended = exec.then(
    (code) => {
      archive.end();
      return { code };
    },
    (error: unknown) => {
      archive.destroy(error as Error);
      return { error };
    },
  );
  let collected: Collected;
  try {
    collected = await collectOutput(archive, stageDir);
  } catch (error) {
    // A stream cut short because tar died (killed when the container's memory is full) or never ran (the
    // container stopped) is not a hostile archive: tell them apart by how the exec ended, which is known at once
    // when the stream ended with it.
    const outcome = await Promise.race([ended, delay(3_000)]);
    stop.abort();
    await ended;
    if (/ rejected: /.test(errorText(error)) || outcome === undefined) throw error;
    if ('error' in outcome) throw outcome.error;
    throw outcome.code !== 0 ? tarFailed(outcome.code, error) : error;
  }
  const outcome = await ended;
  if ('error' in outcome) throw outcome.error;
  if (outcome.code !== 0) throw tarFailed(outcome.code);
  const cut = /^kfarm-cut (\d+)$/m.exec(stderr.text())?.[1];
  return cut === undefined ? collected : { ...collected, logCutBytes: collected.logCutBytes + Number(cut) };
}

function tarFailed(code: number, cause?: unknown): KfarmError {
  const message = `reading the build's results failed (tar exited ${code})`;
  return new KfarmError('KFARM_ENGINE_ERROR', message, cause === undefined ? {} : { cause });
}

function delay(ms: number): Promise<undefined> {
  return new Promise((resolve) => setTimeout(() => resolve(undefined), ms).unref());
}

/** How full each writable mount is, as `<mount> <used KiB> <size KiB>`; a mount that is full explains a failure. */
export async function fullMount(container: EngineContainer): Promise<string | undefined> {
  const out = new TextTail();
  const code = await container.exec(['/bin/df', '-P', '-k', ...WRITABLE_MOUNTS], {
    stdout: out,
    stderr: new TextTail(),
  });
  if (code !== 0) return undefined;
  for (const line of out.text().split('\n').slice(1)) {
    const [, size, used, available, , mount] = line.trim().split(/\s+/);
    // Full: less than 1 MiB (or 1 %) left; what a failed write leaves behind.
    if (mount && Number(available) < Math.max(1024, Number(size) / 100) && Number(used) > 0) return mount;
  }
  return undefined;
}

/** Runs scripts in the container with `bash -c`, for dkms.conf evaluation. */
export function containerRunner(container: EngineContainer, name = 'eval-conf'): ScriptRunner {
  return (script, args, options) =>
    container.exec(['bash', '-c', script, name, ...args], {
      env: options.env,
      workdir: options.workdir,
      stdout: options.stdout,
      stderr: options.stderr,
      ...(options.signal ? { signal: options.signal } : {}),
    });
}
