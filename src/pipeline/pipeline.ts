import { join } from 'node:path';
import { preflightSource } from '../dkms/preflight.js';
import { runFarm, type FarmOptions } from '../farm/run.js';
import { ExitCode, isKfarmError } from '../model/errors.js';
import { readJsonReport, type FarmReport } from '../model/report.js';
import { badStatuses, type VerifyResult } from '../model/result.js';
import { checkPackageOptions, packageOutput, type PackageOptions } from '../package/index.js';
import { writeReports, type WriteReportsOptions, type WrittenReports } from '../report/write-reports.js';
import { parseVerifyParams, verifyReport, type VerifyOptions } from '../verify/index.js';

export interface PipelineOptions {
  /** The output directory every stage reads and writes (report.json is how stages hand over). */
  out: string;
  /** Build first. Without it, the later stages work on the report.json already in `out`. */
  build?: Omit<FarmOptions, 'out' | 'signal'>;
  /** Then boot each built kernel under QEMU and load its modules. */
  verify?: Omit<VerifyOptions, 'signal'>;
  /** Then package the modules per kernel. */
  package?: Omit<PackageOptions, 'signal'>;
  /** Then write junit.xml, summary.md and (under GitHub Actions) annotations; false for none. Default: on. */
  reports?: Omit<WriteReportsOptions, 'sourceDir'> | false;
  signal?: AbortSignal;
}

export interface PipelineRun {
  report: FarmReport;
  reportPath: string;
  /** What the build stage dated everything by. */
  sourceDateEpoch?: number;
  /** Present when the verify stage ran: its result per verified target id. */
  verified?: Map<string, VerifyResult>;
  reports?: WrittenReports;
}

/**
 * build → verify → package → reports, each stage optional, each taking the previous one's report. Every
 * option a later stage needs is checked before the first build starts (a bad signing key fails in a
 * second, not after an hour of builds). A run that stops early (Ctrl-C, a lost engine) still gets its
 * reports written from the partial report.json before the error is rethrown.
 */
export async function runPipeline(options: PipelineOptions): Promise<PipelineRun> {
  await checkStageOptions(options);
  let run: PipelineRun = options.build ? await buildStage(options, options.build) : await readStage(options.out);
  if (options.verify) run = await verifyStage(options, run, options.verify);
  if (options.package)
    run = await packageStage(options, run, { ...packageDefaults(options.build, run), ...options.package });
  if (options.reports !== false) {
    run.reports = await writeReports(options.out, run.report, reportOptions(options));
    run.report = { ...run.report, compatibility: run.reports.compatibility };
  }
  return run;
}

/**
 * Checks what the later stages will need without running anything: the module source tree and its
 * dkms.conf, the packaging options (signing key and certificate, formats), the verify parameters. Callers
 * that do slow work before the pipeline (resolving targets from the archive) call it first.
 */
export async function checkPipelineInputs(options: {
  source?: string;
  /** `--with-module` trees known yet. */
  withSources?: string[];
  package?: Omit<PackageOptions, 'signal'>;
  verify?: Omit<VerifyOptions, 'signal'>;
}): Promise<void> {
  if (options.source !== undefined) await preflightSource(options.source);
  for (const tree of options.withSources ?? []) await preflightSource(tree);
  await checkStageOptions({
    ...(options.package ? { package: options.package } : {}),
    ...(options.verify ? { verify: options.verify } : {}),
  });
}

async function checkStageOptions(options: Pick<PipelineOptions, 'package' | 'verify'>): Promise<void> {
  if (options.package) await checkPackageOptions(options.package);
  if (options.verify?.params !== undefined) parseVerifyParams(options.verify.params);
}

/** The exit code a finished pipeline means: 1 when a target failed to build or its module did not load. */
export function pipelineExitCode(report: FarmReport): number {
  const bad = report.targets.some(
    (t) => badStatuses.includes(t.status) || (t.verify !== undefined && t.verify.status !== 'loaded'),
  );
  return bad ? ExitCode.targetFailed : ExitCode.ok;
}

/** Packages of a build are dated like the build, and their DKMS tarballs may carry its source. */
function packageDefaults(
  build: PipelineOptions['build'],
  run: PipelineRun,
): { source?: string; sourceDateEpoch?: number } {
  if (!build) return {};
  return {
    source: build.source,
    ...(run.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: run.sourceDateEpoch }),
  };
}

async function buildStage(
  options: PipelineOptions,
  build: NonNullable<PipelineOptions['build']>,
): Promise<PipelineRun> {
  try {
    return await runFarm({ ...build, out: options.out, ...(options.signal ? { signal: options.signal } : {}) });
  } catch (error) {
    // Interrupted or engine lost: runFarm wrote a partial report.json; the other reports follow it.
    if (
      (isKfarmError(error, 'KFARM_INTERRUPTED') || isKfarmError(error, 'KFARM_ENGINE_UNAVAILABLE')) &&
      options.reports !== false
    ) {
      const partial = await readJsonReport(options.out).catch(() => undefined);
      if (partial) await writeReports(options.out, partial, reportOptions(options)).catch(() => undefined);
    }
    throw error;
  }
}

async function readStage(out: string): Promise<PipelineRun> {
  const report = await readJsonReport(out);
  return { report, reportPath: join(out, 'report.json') };
}

async function verifyStage(
  options: PipelineOptions,
  run: PipelineRun,
  verify: Omit<VerifyOptions, 'signal'>,
): Promise<PipelineRun> {
  const signal = options.signal;
  const verified = await verifyReport(options.out, run.report, { ...verify, ...(signal ? { signal } : {}) });
  return { ...run, report: verified.report, reportPath: verified.reportPath, verified: verified.results };
}

async function packageStage(
  options: PipelineOptions,
  run: PipelineRun,
  pack: Omit<PackageOptions, 'signal'>,
): Promise<PipelineRun> {
  const signal = options.signal;
  return { ...run, report: await packageOutput(options.out, run.report, { ...pack, ...(signal ? { signal } : {}) }) };
}

function reportOptions(options: PipelineOptions): WriteReportsOptions {
  const extra = options.reports === false ? {} : (options.reports ?? {});
  return { ...extra, sourceDir: options.build?.source ?? '.' };
}
