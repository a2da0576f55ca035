import { randomBytes } from 'node:crypto';
import { preflightSource } from '../dkms/preflight.js';
import { connectEngine, newSession, type Engine } from '../engine/index.js';
import { KfarmError, isKfarmError } from '../model/errors.js';
import { countStatuses, REPORT_SCHEMA_VERSION, writeJsonReport, type FarmReport } from '../model/report.js';
import { startHeartbeat } from './heartbeat.js';
import { farmSettings, type FarmOptions, type FarmSettings } from './options.js';
import { Scheduler } from './scheduler.js';
import { resolveSourceDateEpoch } from '../util/source-date-epoch.js';
import { Staging, type Placed } from './staging.js';
import { TargetCache } from './target-cache.js';

export { farmConcurrency, type FarmOptions } from './options.js';

export interface FarmRun {
  report: FarmReport;
  reportPath: string;
  /** What the builds were dated by (the option, else the source's last commit or newest file): packages use it too. */
  sourceDateEpoch?: number;
}

/**
 * Builds the source for every target and writes the DKMS tree and report.json under `out`. Resolves with
 * per-target results: a kernel that fails is a result, not an error. Throws KfarmError for bad input
 * (nothing is written then), a lost engine (after a partial report; exit 3) or interruption (likewise).
 */
export async function runFarm(options: FarmOptions): Promise<FarmRun> {
  const started = Date.now();
  const given = farmSettings(options);
  const confLabels = await preflightTrees(given.trees);
  // Reproducible builds: make.log is dated by the source, not the clock (checked first). Only a date the caller
  // chose enters the cache key: one read from the tree's mtimes would make a `touch` rebuild every kernel, and
  // the tree's contents are in the key already.
  const chosenEpoch = options.sourceDateEpoch ?? (await resolveSourceDateEpoch());
  const sourceDateEpoch = chosenEpoch ?? (await treesEpoch(given.trees));
  const settings = sourceDateEpoch === undefined ? given : { ...given, sourceDateEpoch };
  if (settings.targets.length === 0) throw new KfarmError('KFARM_USAGE', 'no targets: give --target or --matrix');
  const engine = options.engine ?? (await connect(options.signal));
  await engine.sweep();
  const staging = await Staging.open(settings.out, engine.session.id);
  const cache = await TargetCache.open(settings, chosenEpoch);
  const confLabel = (tree: string) => confLabels.get(tree) ?? 'dkms.conf';
  const scheduler = new Scheduler(engine, settings, staging, cache, confLabel, options.signal);
  const stopHeartbeat = startHeartbeat(engine, (error) => scheduler.stop(error));
  try {
    await scheduler.runAll();
  } finally {
    stopHeartbeat();
    await cleanUp(engine, settings);
  }
  const run = await finish(scheduler, staging, started, options.signal);
  return { ...run, ...(sourceDateEpoch === undefined ? {} : { sourceDateEpoch }) };
}

/** Each tree's dkms.conf as the user names it, after preflightSource checked the tree. */
async function preflightTrees(trees: readonly string[]): Promise<Map<string, string>> {
  const labels = new Map<string, string>();
  for (const tree of trees) labels.set(tree, (await preflightSource(tree)).confLabel);
  return labels;
}

/** The newest of the trees' dates: what the newest source says. */
async function treesEpoch(trees: readonly string[]): Promise<number | undefined> {
  const epochs = await Promise.all(trees.map((tree) => resolveSourceDateEpoch(tree)));
  const known = epochs.filter((e): e is number => e !== undefined);
  return known.length > 0 ? Math.max(...known) : undefined;
}

function connect(signal: AbortSignal | undefined): Promise<Engine> {
  return connectEngine(newSession(randomBytes(6).toString('hex')), signal ? { signal } : {});
}

/** Removes the run's containers, within a bounded time; what could not be removed is said, and swept next time. */
async function cleanUp(engine: Engine, settings: FarmSettings): Promise<void> {
  const pending = await engine.settle();
  const left = await engine.removeSessionContainers();
  if (pending > 0 || left !== 0) {
    const what = left > 0 ? `${left} container(s)` : 'its containers';
    settings.events.onWarning?.(
      `could not remove ${what} of run ${engine.session.id} (the engine did not answer in time); the next kfarm run removes them`,
    );
  }
}

/** Places the DKMS tree and writes report.json, unless bad input stopped the run: then nothing is kept. */
async function finish(scheduler: Scheduler, staging: Staging, started: number, signal?: AbortSignal): Promise<FarmRun> {
  const fatal = scheduler.fatal;
  if (
    fatal !== undefined &&
    !isKfarmError(fatal, 'KFARM_ENGINE_UNAVAILABLE') &&
    !isKfarmError(fatal, 'KFARM_OUTPUT_FAILED')
  ) {
    await staging.discard();
    throw asError(fatal);
  }
  let reportPath: string;
  let report: FarmReport;
  try {
    const placed = await staging.place(scheduler.outcomes, scheduler.settings.targets);
    report = assembleReport(placed, started, signal?.aborted === true || fatal !== undefined);
    reportPath = await writeJsonReport(staging.out, report);
  } catch (error) {
    // Writing the output failed (while stopping for the same reason, say): the first reason is the one to tell.
    throw asError(fatal ?? error);
  } finally {
    await staging.close().catch(() => undefined);
  }
  if (fatal !== undefined) throw asError(fatal);
  if (signal?.aborted) throw new KfarmError('KFARM_INTERRUPTED', `interrupted: partial report in ${reportPath}`);
  return { report, reportPath };
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new KfarmError('KFARM_INTERNAL', String(reason));
}

function assembleReport(placed: Placed, started: number, partial: boolean): FarmReport {
  return {
    schemaVersion: REPORT_SCHEMA_VERSION,
    module: placed.module,
    version: placed.version,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    partial,
    counts: countStatuses(placed.results),
    targets: placed.results,
    ...(placed.notRun.length > 0 ? { notRun: placed.notRun } : {}),
  };
}
