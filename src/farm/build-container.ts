import type { Readable } from 'node:stream';
import { create as createTar } from 'tar';
import { DKMS_TREE } from '../dkms/paths.js';
import type { ScriptRunner } from '../dkms/evaluate.js';
import { Label, type Engine, type EngineContainer } from '../engine/index.js';
import type { Target } from '../model/result.js';
import type { FarmSettings } from './options.js';

/** Where the source arrives in a build container, and where results leave from. */
export const CONTAINER_SOURCE = '/kfarm/src';
export const CONTAINER_OUT = '/kfarm/out';

/**
 * A build container: no network, no capabilities, resource limits, and a main process that ends by itself
 * (an orphaned container of a killed kfarm outlives it by at most its limit). The build directory and /tmp
 * are in memory: kbuild's many small files cost no journal writes, and removing the container does not have
 * to delete them one by one. They count against the memory limit.
 */
export function startBuildContainer(
  engine: Engine,
  image: string,
  target: Target,
  settings: FarmSettings,
  signal: AbortSignal,
) {
  const tmpfs = `rw,exec,nosuid,nodev,size=${settings.limits.memoryBytes}`;
  return engine.start(
    {
      image,
      // Its own limit plus, at most, a wait for a build slot as long as another target's limit.
      cmd: ['sleep', String(2 * Math.ceil(settings.timeoutMs / 1000) + 60)],
      network: 'none',
      hardened: true,
      limits: settings.limits,
      tmpfs: { [DKMS_TREE]: tmpfs, '/tmp': tmpfs },
      labels: { [Label.role]: 'build', [Label.target]: target.id },
    },
    signal,
  );
}

/** The source tree goes in through the engine's archive API (no bind mount: remote engines work). */
export async function copySourceIn(container: EngineContainer, source: string, signal: AbortSignal): Promise<void> {
  const tarball = createTar({ cwd: source, portable: true, prefix: CONTAINER_SOURCE.slice(1) }, [
    '.',
  ]) as unknown as Readable;
  await container.putArchive(tarball, '/', signal);
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
