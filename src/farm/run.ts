import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';
import { mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import PQueue from 'p-queue';
import { Engine } from '../engine/engine.js';
import { newSession } from '../engine/labels.js';
import { KfarmError, errorText, isKfarmError } from '../errors.js';
import { preflightSource } from '../dkms/preflight.js';
import { ImageStore, type ImageEvents, type SuiteSource } from '../images/image-store.js';
import { countStatuses, REPORT_SCHEMA_VERSION, writeJsonReport, type FarmReport } from '../report/json.js';
import { buildTarget, type BuildJobOutcome } from './build-target.js';
import type { Target, TargetResult } from './types.js';

export interface FarmEvents extends ImageEvents {
  onTargetStart?: (target: Target) => void;
  onTargetPhase?: (target: Target, phase: string) => void;
  onTargetDone?: (result: TargetResult) => void;
}

export interface FarmOptions {
  source: string;
  out: string;
  targets: Target[];
  /** Where each release's packages come from (base image sources.list). */
  sources: (release: string) => SuiteSource[];
  jobs?: number;
  timeoutMs?: number;
  memoryBytes?: number;
  sourceDateEpoch?: number;
  signal?: AbortSignal;
  events?: FarmEvents;
  /** Reuse a connected engine (tests, long-lived library users); otherwise one is connected. */
  engine?: Engine;
}

export interface FarmRun {
  report: FarmReport;
  reportPath: string;
}

/**
 * Builds the source for every target and writes the DKMS tree and report.json under `out`. Resolves with
 * per-target results: a kernel that fails is a result, not an error. Throws KfarmError for bad input
 * (nothing is written then), an unreachable engine, or interruption (after writing a partial report).
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

  const outExisted = await stat(out).then(() => true, () => false);
  const staging = join(out, `.kfarm-tmp-${session.id}`);
  await mkdir(staging, { recursive: true });

  const concurrency = Math.max(1, Math.min(options.jobs ?? cpus().length, options.targets.length));
  const cores = cpus().length;
  const parallelJobs = Math.max(1, Math.ceil(cores / concurrency));
  const images = new ImageStore(engine, {
    logDir: join(staging, 'images'),
    sources: options.sources,
    ...(options.events ? { events: options.events } : {}),
  });
  const controller = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
  const queue = new PQueue({ concurrency });
  const outcomes: (BuildJobOutcome | undefined)[] = new Array(options.targets.length);
  let fatal: unknown;

  const jobs = options.targets.map((target, index) =>
    queue.add(async () => {
      if (signal.aborted) return;
      options.events?.onTargetStart?.(target);
      const stageDir = join(staging, String(index));
      await mkdir(stageDir);
      try {
        outcomes[index] = await buildTarget(target, {
          engine,
          images,
          source,
          confLabel,
          stageDir,
          parallelJobs,
          timeoutMs: options.timeoutMs ?? 30 * 60_000,
          limits: { memoryBytes: options.memoryBytes ?? 4 * 1024 ** 3, pids: 4096, cpus: cores },
          ...(options.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: options.sourceDateEpoch }),
          signal,
          onPhase: (phase) => options.events?.onTargetPhase?.(target, phase),
        });
      } catch (error) {
        if (signal.aborted) return;
        // A broken dkms.conf or a lost engine concerns every target: stop all. Anything else is this kernel's.
        if (isKfarmError(error, 'KFARM_CONFIG_INVALID') || isKfarmError(error, 'KFARM_ENGINE_UNAVAILABLE')) {
          fatal ??= error;
          controller.abort(error);
          return;
        }
        outcomes[index] = { result: failedResult(target, errorText(error)) };
      }
      const result = outcomes[index]?.result;
      if (result) options.events?.onTargetDone?.(result);
    }),
  );

  try {
    await Promise.all(jobs);
  } finally {
    await engine.removeSessionContainers().catch(() => undefined);
  }

  if (fatal) {
    await rm(staging, { recursive: true, force: true });
    if (!outExisted) await rmdir(out).catch(() => undefined);
    throw fatal;
  }

  const results: TargetResult[] = [];
  let module = '';
  let version = '';
  for (const [index, outcome] of outcomes.entries()) {
    if (!outcome) continue;
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
  const hadOld = await rename(dest, old).then(() => true, () => false);
  await rename(stageDir, dest);
  if (hadOld) await rm(old, { recursive: true, force: true });
}

function failedResult(target: Target, error: string): TargetResult {
  return {
    id: target.id,
    distro: target.distro,
    release: target.release,
    kernel: target.kernel,
    arch: target.arch,
    status: 'failed',
    durationMs: 0,
    artifacts: [],
    error,
  };
}
