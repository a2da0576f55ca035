import { createHash } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { TextTail } from '../util/text-tail.js';
import { create as createTar } from 'tar';
import type { EngineContainer } from '../engine/container.js';
import type { Engine } from '../engine/engine.js';
import { Label } from '../engine/labels.js';
import { KfarmError, isKfarmError } from '../errors.js';
import { parseConfRecords } from '../dkms/conf-records.js';
import { planFromConf, type DkmsPlan } from '../dkms/plan.js';
import { planScript } from '../dkms/plan-script.js';
import { imagesDir } from '../images/recipe.js';
import { collectOutput } from './collect.js';
import type { Target, TargetResult } from './types.js';

export interface BuildJobOptions {
  engine: Engine;
  /** The target's builder image, already prepared. */
  image: string;
  source: string;
  /** dkms.conf as the user names it, for error messages. */
  confLabel: string;
  /** A fresh directory this job owns; module/ and log/ are collected into it. */
  stageDir: string;
  parallelJobs: number;
  timeoutMs: number;
  limits: { memoryBytes: number; pids: number; cpus: number };
  sourceDateEpoch?: number;
  signal?: AbortSignal;
  onPhase?: (phase: Phase) => void;
  /**
   * Runs the compile (and copy-out) in one of the `--jobs` build slots. The container is started, filled
   * and evaluated before a slot is free, so a slot that frees up starts compiling at once. May throw
   * NotScheduled (a --fail-fast run stopped meanwhile).
   */
  buildSlot?: <T>(work: () => Promise<T>) => Promise<T>;
  /**
   * Called inside the build slot, before it is released, once the compile has ended: false when it failed
   * (non-zero exit, time limit, rejected output…). Lets --fail-fast stop the next slot from starting.
   */
  onCompiled?: (ok: boolean) => void;
}

/** Thrown by a build slot that will not run the work: the target is reported as not run. */
export class NotScheduled extends Error {}

export type Phase = 'start' | 'copyIn' | 'evaluate' | 'build' | 'copyOut';

export interface BuildJobOutcome {
  result: TargetResult;
  /** Present when the build got far enough to name its package: where the stage goes in the DKMS tree. */
  plan?: Pick<DkmsPlan, 'packageName' | 'packageVersion'>;
}

const dkmsTree = '/var/lib/dkms';
const sourceTree = '/usr/src';

const scripts = {
  eval: readFile(join(imagesDir, 'runtime/eval-conf.sh'), 'utf8'),
  build: readFile(join(imagesDir, 'runtime/build.sh'), 'utf8'),
};

/** Identifies the in-container scripts, for the result cache key. */
export async function runtimeHash(): Promise<string> {
  return createHash('sha256')
    .update(await scripts.eval)
    .update('\0')
    .update(await scripts.build)
    .digest('hex');
}

/**
 * One target's whole lifecycle once its image is ready: container, source in, dkms.conf evaluated, build, output out,
 * container removed. A failed compile is a result; a broken dkms.conf is thrown (it is the user's input,
 * not this kernel's problem); so is interruption.
 */
export async function buildTarget(target: Target, options: BuildJobOptions): Promise<BuildJobOutcome> {
  const started = Date.now();
  // The time limit covers the target's own work, not its wait for a build slot.
  const timeout = new Deadline(options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout.signal]) : timeout.signal;
  let waited = 0;
  const base: Omit<TargetResult, 'status' | 'durationMs'> = {
    id: target.id,
    distro: target.distro,
    release: target.release,
    kernel: target.kernel,
    arch: target.arch,
    flavour: target.flavour,
    artifacts: [],
  };
  const finish = (status: TargetResult['status'], extra: Partial<TargetResult> = {}): TargetResult => {
    enter(undefined);
    timeout.stop();
    return { ...base, status, durationMs: Date.now() - started - waited, phases, ...extra };
  };
  const slot = options.buildSlot ?? (<T>(work: () => Promise<T>) => work());

  const image = options.image;
  const phases: Partial<Record<Phase, number>> = {};
  let phase: Phase | undefined;
  let phaseStarted = Date.now();
  const enter = (next: Phase | undefined) => {
    const now = Date.now();
    if (phase) phases[phase] = (phases[phase] ?? 0) + now - phaseStarted;
    phase = next;
    phaseStarted = now;
    if (next) options.onPhase?.(next);
  };
  enter('start');
  let container: EngineContainer | undefined;
  let plan: DkmsPlan | undefined;
  try {
    container = await options.engine.start(
      {
        image,
        // Its own limit plus, at most, a wait for a build slot as long as another target's limit.
        cmd: ['sleep', String(2 * Math.ceil(options.timeoutMs / 1000) + 60)],
        network: 'none',
        hardened: true,
        limits: options.limits,
        // The build directory in memory: kbuild's many small files cost no journal writes, and removing the
        // container does not have to delete them one by one. Counted against the memory limit.
        tmpfs: Object.fromEntries(
          [dkmsTree, '/tmp'].map((path) => [path, `rw,exec,nosuid,nodev,size=${options.limits.memoryBytes}`]),
        ),
        labels: { [Label.role]: 'build', [Label.target]: target.id },
      },
      signal,
    );
    enter('copyIn');
    const tarball = createTar({ cwd: options.source, portable: true, prefix: 'kfarm/src' }, [
      '.',
    ]) as unknown as Readable;
    await container.putArchive(tarball, '/', signal);

    enter('evaluate');
    const env = {
      kernelver: target.kernel,
      arch: target.arch,
      kernel_source_dir: `/lib/modules/${target.kernel}/build`,
      dkms_tree: dkmsTree,
      source_tree: sourceTree,
      install_tree: '/lib/modules',
      parallel_jobs: String(options.parallelJobs),
    };
    plan = await evaluate(container, env, options, target, signal);
    const module = plan.packageName;
    const version = plan.packageVersion;
    if (plan.excluded) return { result: finish('skipped', { error: plan.excluded, image }), plan };

    const ready = container;
    const buildPlan = plan;
    const reason = new TextTail();
    timeout.pause();
    enter(undefined);
    const waitStarted = Date.now();
    const { code, collected } = await slot(async () => {
      waited = Date.now() - waitStarted;
      timeout.resume();
      signal.throwIfAborted();
      enter('build');
      try {
        const exit = await ready.exec(['bash', '-c', await scripts.build, 'kfarm-build'], {
          env: {
            KFARM_PLAN: planScript(buildPlan, { ...env, module, module_version: version }),
            ...(options.sourceDateEpoch === undefined ? {} : { SOURCE_DATE_EPOCH: String(options.sourceDateEpoch) }),
          },
          stdout: reason,
          stderr: reason,
          signal,
        });
        enter('copyOut');
        const compiled = {
          code: exit,
          collected: await collectOutput((await ready.getArchive('/kfarm/out', signal)) as never, options.stageDir),
        };
        options.onCompiled?.(exit === 0);
        return compiled;
      } catch (error) {
        options.onCompiled?.(false);
        throw error;
      }
    });
    const log = collected.log ? 'log/make.log' : undefined;
    const artifacts = collected.modules.sort().map((name) => `module/${name}`);
    if (code !== 0) {
      if ((await container.oomKills()) > 0)
        return {
          result: finish('oom', {
            error: `the build ran out of memory (limit ${Math.round(options.limits.memoryBytes / 1024 ** 2)} MiB; raise it with --memory)`,
            image,
            ...(log ? { log } : {}),
          }),
          plan,
        };
      const why = reason.lastLine() || `the build exited ${code}`;
      return {
        result: finish('failed', { error: why, image, makeCommand: plan.buildCommand, ...(log ? { log } : {}) }),
        plan,
      };
    }
    return {
      result: finish('built', { artifacts, image, makeCommand: plan.buildCommand, ...(log ? { log } : {}) }),
      plan,
    };
  } catch (error) {
    if (timeout.signal.aborted && !options.signal?.aborted) {
      // Keep what make wrote so far: the reason a build hangs is usually in its last lines.
      const partial = container && plan ? await collectQuietly(container, options.stageDir) : undefined;
      const error = `the build did not finish within ${Math.round(options.timeoutMs / 1000)} s`;
      return {
        result: finish('timeout', { error, image, ...(partial?.log ? { log: 'log/make.log' } : {}) }),
        ...(plan ? { plan } : {}),
      };
    }
    if (isKfarmError(error, 'KFARM_OUTPUT_UNSAFE')) {
      // Nothing of a rejected output is kept, not even the files that came before the bad entry.
      await rm(options.stageDir, { recursive: true, force: true });
      await mkdir(options.stageDir);
      return { result: finish('failed', { error: error.message, image }), ...(plan ? { plan } : {}) };
    }
    throw error;
  } finally {
    timeout.stop();
    if (container) options.engine.removeLater(container);
  }
}

/** A time limit that can be paused while the target waits for a build slot. */
class Deadline {
  readonly #controller = new AbortController();
  #left: number;
  #since = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(ms: number) {
    this.#left = ms;
    this.resume();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  pause(): void {
    if (!this.#timer) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#left -= Date.now() - this.#since;
  }

  resume(): void {
    if (this.#timer || this.#stopped || this.#controller.signal.aborted) return;
    this.#since = Date.now();
    // Unreferenced like AbortSignal.timeout: a pending limit never keeps the process alive.
    this.#timer = setTimeout(() => this.#controller.abort(new Error('timeout')), Math.max(0, this.#left)).unref();
  }

  stop(): void {
    this.#stopped = true;
    this.pause();
  }
}

async function collectQuietly(container: EngineContainer, stageDir: string) {
  const signal = AbortSignal.timeout(10_000);
  try {
    return await collectOutput((await container.getArchive('/kfarm/out', signal)) as never, stageDir);
  } catch {
    return undefined;
  }
}

async function evaluate(
  container: EngineContainer,
  env: Record<string, string>,
  options: BuildJobOptions,
  target: Target,
  signal: AbortSignal,
): Promise<DkmsPlan> {
  const stdout = new BufferCollector();
  const stderr = new TextTail();
  const code = await container.exec(['bash', '-c', await scripts.eval, 'eval-conf', '/kfarm/src/dkms.conf'], {
    env,
    workdir: '/kfarm/src',
    stdout,
    stderr,
    signal,
  });
  if (code === 65)
    throw new KfarmError('KFARM_CONFIG_INVALID', `${options.confLabel}: ${stderr.lastLine() || 'bash syntax error'}`);
  if (code !== 0) {
    throw new KfarmError(
      'KFARM_CONFIG_INVALID',
      `${options.confLabel}: sourcing it with bash failed (exit ${code})${stderr.lastLine() ? `: ${stderr.lastLine()}` : ''}`,
    );
  }
  const records = parseConfRecords(stdout.buffer());
  const name = records.vars.get('PACKAGE_NAME')?.get(0) ?? '';
  const version = records.vars.get('PACKAGE_VERSION')?.get(0) ?? '';
  return planFromConf(records, {
    file: options.confLabel,
    kernelver: target.kernel,
    kernelSourceDir: env['kernel_source_dir'] ?? '',
    buildDir: `${dkmsTree}/${name}/${version}/build`,
    parallelJobs: options.parallelJobs,
  });
}

class BufferCollector extends Writable {
  #chunks: Buffer[] = [];
  #size = 0;
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error) => void): void {
    this.#size += chunk.length;
    if (this.#size > 16 * 1024 * 1024) return callback(new Error('dkms.conf evaluation printed more than 16 MiB'));
    this.#chunks.push(chunk);
    callback();
  }
  buffer(): Buffer {
    return Buffer.concat(this.#chunks);
  }
}
