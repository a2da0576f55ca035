import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { cpus } from 'node:os';
import { mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import PQueue from 'p-queue';
import { Engine } from '../engine/engine.js';
import { newSession } from '../engine/labels.js';
import { KfarmError, errorText, isKfarmError } from '../errors.js';
import { preflightSource } from '../dkms/preflight.js';
import { cacheRoot } from '../util/cache-dir.js';
import { ImageStore, type ImageEvents, type SuiteSource } from '../images/image-store.js';
import { countStatuses, REPORT_SCHEMA_VERSION, writeJsonReport, type FarmReport } from '../report/json.js';
import { buildTarget, NotScheduled, runtimeHash, type BuildJobOutcome, type Phase } from './build-target.js';
import { cacheKey, hashSourceTree, ResultCache } from './cache.js';
import { applyKnownFailing, knownFailure, type KnownFailing } from './known-failing.js';
import { badStatuses, type FirstError, type Target, type TargetResult } from './types.js';
import { firstCompilerError } from '../report/compiler-errors.js';
import { MAX_LOG_BYTES, readCapped } from '../report/write-reports.js';

export interface FarmEvents extends ImageEvents {
  onTargetStart?: (target: Target) => void;
  onTargetPhase?: (target: Target, phase: 'image' | Phase) => void;
  onTargetDone?: (result: TargetResult) => void;
}

export interface FarmOptions {
  source: string;
  out: string;
  targets: Target[];
  /** Where each release's packages come from (base image sources.list). */
  sources: (release: string) => SuiteSource[];
  /** Builds at a time (default: CPU count). */
  jobs?: number;
  /** Image preparations at a time (network and dpkg bound; default 3). */
  imageJobs?: number;
  timeoutMs?: number;
  /** Memory limit of each build container (default 4 GiB); exceeding it is status `oom`. */
  memoryBytes?: number;
  knownFailing?: readonly KnownFailing[];
  /** Stop scheduling builds after the first failure. */
  failFast?: boolean;
  sourceDateEpoch?: number;
  /** The result cache (`<dir>/results`); false builds everything and stores nothing. Default: kfarm's cache dir. */
  cache?: { dir: string } | false;
  signal?: AbortSignal;
  events?: FarmEvents;
  /** Reuse a connected engine (tests, long-lived library users); otherwise one is connected. */
  engine?: Engine;
}

/** Builds at a time for these options: what `--jobs` means. */
export function farmConcurrency(options: Pick<FarmOptions, 'jobs' | 'targets'>): number {
  return Math.max(1, Math.min(options.jobs ?? cpus().length, options.targets.length));
}

export interface FarmRun {
  report: FarmReport;
  reportPath: string;
}

/**
 * Builds the source for every target and writes the DKMS tree and report.json under `out`. Resolves with
 * per-target results: a kernel that fails is a result, not an error. Throws KfarmError for bad input
 * (nothing is written then), an unreachable engine, or interruption (after writing a partial report).
 *
 * Three queues: image preparation (de-duplicated by the ImageStore), container preparation (start, copy-in,
 * evaluation: up to twice the build concurrency) and build slots. A target leaves the image queue as soon as
 * its own image is ready, so builds of ready kernels overlap with preparing the others, and a build slot that
 * frees up finds the next target's container ready to compile.
 */
export async function runFarm(options: FarmOptions): Promise<FarmRun> {
  const started = Date.now();
  const source = resolve(options.source);
  const out = resolve(options.out);
  const { confLabel } = await preflightSource(source);
  if (options.targets.length === 0) throw new KfarmError('KFARM_USAGE', 'no targets: give --target or --matrix');

  const session = options.engine?.session ?? newSession(randomBytes(6).toString('hex'));
  const engine = options.engine ?? (await Engine.connect(session, options.signal ? { signal: options.signal } : {}));
  await engine.sweep();

  const outExisted = await stat(out).then(
    () => true,
    () => false,
  );
  const staging = join(out, `.kfarm-tmp-${session.id}`);
  await mkdir(staging, { recursive: true });

  const cores = cpus().length;
  const concurrency = farmConcurrency(options);
  // DKMS's own default: every build may use every core. Builds running side by side then oversubscribe a
  // little, which costs nothing, and the last builds of a run keep all cores busy instead of one.
  const parallelJobs = cores;
  const images = new ImageStore(engine, {
    logDir: join(staging, 'images'),
    sources: options.sources,
    ...(options.events ? { events: options.events } : {}),
  });
  const controller = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
  // Every queued target listens to it (p-queue, its build): many listeners on a large matrix, not a leak.
  setMaxListeners(0, signal);
  const imageQueue = new PQueue({ concurrency: options.imageJobs ?? 3 });
  // At most `concurrency` compile at once; as many more are started, filled and evaluated meanwhile, so a
  // build slot that frees up starts compiling at once (container start and copy-in are off the slot).
  const prepareQueue = new PQueue({ concurrency: concurrency * 2 });
  const buildQueue = new PQueue({ concurrency });
  const outcomes: (BuildJobOutcome | undefined)[] = new Array(options.targets.length);
  const known = options.knownFailing ?? [];
  const cache = options.cache === false ? undefined : new ResultCache(options.cache?.dir ?? cacheRoot());
  const keyBase = cache ? { source: await hashSourceTree(source), runtime: await runtimeHash() } : undefined;
  let fatal: unknown;
  let stopScheduling = false;

  const record = (index: number, outcome: BuildJobOutcome) => {
    outcome.result = applyKnownFailing(outcome.result, known);
    outcomes[index] = outcome;
    options.events?.onTargetDone?.(outcome.result);
    // Queued builds see the flag and return at once (p-queue's clear() would leave their promises pending).
    if (options.failFast && badStatuses.includes(outcome.result.status)) stopScheduling = true;
  };

  const runTarget = async (target: Target, index: number): Promise<void> => {
    options.events?.onTargetStart?.(target);
    const imageStarted = Date.now();
    let image: string;
    try {
      options.events?.onTargetPhase?.(target, 'image');
      image = await imageQueue.add(() => images.headers(target, signal), { signal });
    } catch (error) {
      if (signal.aborted) return;
      return record(index, { result: failedResult(target, errorText(error), Date.now() - imageStarted) });
    }
    const imageMs = Date.now() - imageStarted;
    if (stopScheduling) return;
    const stageDir = join(staging, String(index));
    await mkdir(stageDir);
    let key: string | undefined;
    if (cache && keyBase) {
      const imageId = await engine.imageId(image);
      if (imageId) {
        key = cacheKey({
          ...keyBase,
          image: imageId,
          kernel: target.kernel,
          arch: target.arch,
          ...(options.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: options.sourceDateEpoch }),
        });
        const hit = await cache.restore(key, stageDir);
        if (hit) {
          const result: TargetResult = {
            ...baseResult(target),
            status: 'cached',
            durationMs: Date.now() - imageStarted,
            phases: { image: imageMs },
            ...hit.result,
          };
          return record(index, { result, plan: { packageName: hit.packageName, packageVersion: hit.packageVersion } });
        }
      }
    }
    await prepareQueue
      .add(
        async () => {
          if (signal.aborted || stopScheduling) return;
          try {
            const outcome = await buildTarget(target, {
              engine,
              image,
              source,
              confLabel,
              stageDir,
              parallelJobs,
              timeoutMs: options.timeoutMs ?? 30 * 60_000,
              limits: { memoryBytes: options.memoryBytes ?? 4 * 1024 ** 3, pids: 4096, cpus: cores },
              ...(options.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: options.sourceDateEpoch }),
              signal,
              onPhase: (phase) => options.events?.onTargetPhase?.(target, phase),
              buildSlot: (work) =>
                buildQueue.add(
                  async () => {
                    if (stopScheduling) throw new NotScheduled();
                    return work();
                  },
                  // Among targets waiting for a build slot, the matrix order wins.
                  { signal, priority: -index },
                ),
              // Decided before the slot is released, so with --fail-fast no build starts after a failure.
              onCompiled: (ok) => {
                if (!ok && options.failFast && !knownFailure(target, known)) stopScheduling = true;
              },
            });
            outcome.result.phases = { image: imageMs, ...outcome.result.phases };
            outcome.result.durationMs += imageMs;
            if (badStatuses.includes(outcome.result.status) && outcome.result.log && outcome.plan) {
              const firstError = await firstErrorOf(join(stageDir, outcome.result.log), outcome.plan);
              if (firstError) outcome.result.firstError = firstError;
            }
            if (cache && key && outcome.plan && outcome.result.status === 'built') {
              const { artifacts, log, makeCommand } = outcome.result;
              await cache.store(key, stageDir, {
                ...outcome.plan,
                result: { artifacts, ...(log ? { log } : {}), ...(makeCommand ? { makeCommand } : {}) },
              });
            }
            record(index, outcome);
          } catch (error) {
            if (signal.aborted || error instanceof NotScheduled) return;
            // A broken dkms.conf or a lost engine concerns every target: stop all. Anything else is this kernel's.
            if (isKfarmError(error, 'KFARM_CONFIG_INVALID') || isKfarmError(error, 'KFARM_ENGINE_UNAVAILABLE')) {
              fatal ??= error;
              controller.abort(error);
              return;
            }
            record(index, { result: failedResult(target, errorText(error), imageMs) });
          }
        },
        { signal, priority: -index },
      )
      .catch((error: unknown) => {
        if (!signal.aborted) throw error;
      });
  };

  try {
    await Promise.all(options.targets.map((target, index) => runTarget(target, index)));
  } finally {
    await engine.settle();
    await engine.removeSessionContainers().catch(() => undefined);
  }

  if (fatal) {
    await rm(staging, { recursive: true, force: true });
    if (!outExisted) await rmdir(out).catch(() => undefined);
    throw fatal;
  }

  const results: TargetResult[] = [];
  const notRun: string[] = [];
  let module = '';
  let version = '';
  for (const [index, outcome] of outcomes.entries()) {
    if (!outcome) {
      notRun.push(options.targets[index]?.id ?? '');
      continue;
    }
    const { result, plan } = outcome;
    if (plan) {
      module ||= plan.packageName;
      version ||= plan.packageVersion;
      const stageDir = join(staging, String(index));
      if ((await readdir(stageDir)).length > 0) {
        const rel = join('dkms', plan.packageName, plan.packageVersion, result.kernel, result.arch);
        await placeTree(stageDir, join(out, rel));
        result.artifacts = result.artifacts.map((a) => join(rel, a));
        if (result.log) result.log = join(rel, result.log);
      }
    }
    results.push(result);
  }
  const interrupted = options.signal?.aborted === true;
  const report: FarmReport = {
    schemaVersion: REPORT_SCHEMA_VERSION,
    module,
    version,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    partial: interrupted,
    counts: countStatuses(results),
    targets: results,
    ...(notRun.length > 0 ? { notRun } : {}),
  };
  const reportPath = await writeJsonReport(out, report);
  await rm(staging, { recursive: true, force: true });
  if (interrupted) throw new KfarmError('KFARM_INTERRUPTED', `interrupted: partial report in ${reportPath}`);
  return { report, reportPath };
}

/** Replaces a kernel's directory in the DKMS tree with a freshly built one (rename: never half there). */
async function placeTree(stageDir: string, dest: string): Promise<void> {
  await mkdir(join(dest, '..'), { recursive: true });
  const old = `${dest}.old-${randomBytes(4).toString('hex')}`;
  const hadOld = await rename(dest, old).then(
    () => true,
    () => false,
  );
  await rename(stageDir, dest);
  if (hadOld) await rm(old, { recursive: true, force: true });
}

/** Where DKMS (and so kfarm, in its containers) builds a package: make.log paths are relative to it. */
export function buildDirOf(plan: { packageName: string; packageVersion: string }): string {
  return `/var/lib/dkms/${plan.packageName}/${plan.packageVersion}/build`;
}

async function firstErrorOf(
  log: string,
  plan: { packageName: string; packageVersion: string },
): Promise<FirstError | undefined> {
  const text = await readCapped(log, MAX_LOG_BYTES);
  return text === undefined ? undefined : firstCompilerError(text, { buildDir: buildDirOf(plan) });
}

function baseResult(
  target: Target,
): Pick<TargetResult, 'id' | 'distro' | 'release' | 'kernel' | 'arch' | 'flavour' | 'artifacts'> {
  return {
    id: target.id,
    distro: target.distro,
    release: target.release,
    kernel: target.kernel,
    arch: target.arch,
    flavour: target.flavour,
    artifacts: [],
  };
}

function failedResult(target: Target, error: string, durationMs: number): TargetResult {
  return { ...baseResult(target), status: 'failed', durationMs, error };
}
