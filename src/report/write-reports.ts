import { appendFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { inside } from '../util/paths.js';
import type { FirstError, TargetResult } from '../model/result.js';
import { badStatuses } from '../model/result.js';
import { writeFileAtomic } from '../util/atomic.js';
import { compilerDiagnostics } from '../dkms/compiler-errors.js';
import { buildDirOf } from '../dkms/paths.js';
import { githubAnnotations, sourcePrefixFor } from './github.js';
import { targetVersion, writeJsonReport, type CompatRange, type FarmReport } from '../model/report.js';
import { compatibility } from './compat.js';
import { renderHtml } from './html.js';
import { JUNIT_TAIL_LINES, renderJunit } from './junit.js';
import { MAX_LOG_BYTES, readCapped, tailFile } from '../util/read-file.js';
import { capSummary, renderSummary } from './markdown.js';

export interface WriteReportsOptions {
  /** The module source directory as given on the command line (for annotation paths). */
  sourceDir: string;
  /** Default process.env: GITHUB_STEP_SUMMARY, GITHUB_ACTIONS, GITHUB_WORKSPACE. */
  env?: NodeJS.ProcessEnv;
  /** Where annotations are printed under GitHub Actions (default: process.stdout). */
  stdout?: (text: string) => void;
}

export interface WrittenReports {
  /** Path of junit.xml. */
  junit: string;
  /** Path of summary.md. */
  summary: string;
  /** Path of report.html. */
  html: string;
  /** The `::error` workflow commands (printed only when GITHUB_ACTIONS is 'true'). */
  annotations: string[];
  /** Every error of each failed target's make.log, by target id. */
  diagnostics: Map<string, FirstError[]>;
  /** The kernel-compatibility analysis written into report.json and summary.md. */
  compatibility: CompatRange[];
}

/**
 * Writes `<out>/junit.xml`, `<out>/summary.md` and `<out>/report.html` (atomically), adds the kernel-compatibility analysis to
 * `<out>/report.json`, appends the summary to `$GITHUB_STEP_SUMMARY` when set, and under GitHub Actions prints
 * error annotations. Targets whose `firstError` is unset get the first error of their make.log in these reports
 * (report.json keeps what the build recorded).
 */
export async function writeReports(
  out: string,
  report: FarmReport,
  opts: WriteReportsOptions,
): Promise<WrittenReports> {
  const env = opts.env ?? process.env;
  const { view, diagnostics } = await withDiagnostics(out, report);
  const junit = await renderJunit(view, {
    tail: async (log) => {
      const path = insideOut(out, log);
      return path ? tailFile(path, JUNIT_TAIL_LINES) : '';
    },
  });
  const compat = compatibility(view.targets);
  const summary = capSummary(renderSummary({ ...view, compatibility: compat }));
  await mkdir(out, { recursive: true });
  const junitPath = join(out, 'junit.xml');
  const summaryPath = join(out, 'summary.md');
  const htmlPath = join(out, 'report.html');
  // report.json gets the analysis too (computed from the same view: first errors from make.log where it had none).
  await writeJsonReport(out, { ...report, compatibility: compat });
  await writeFileAtomic(junitPath, junit);
  await writeFileAtomic(summaryPath, summary);
  await writeFileAtomic(htmlPath, renderHtml({ ...view, compatibility: compat }));
  if (env.GITHUB_STEP_SUMMARY) await appendFile(env.GITHUB_STEP_SUMMARY, `${summary}\n`);

  const annotations = githubAnnotations(view, diagnostics, { sourcePrefix: sourcePrefixFor(opts.sourceDir, env) });
  if (env.GITHUB_ACTIONS === 'true' && annotations.length > 0) {
    const write = opts.stdout ?? ((text: string) => process.stdout.write(text));
    write(annotations.map((line) => `${line}\n`).join(''));
  }
  return { junit: junitPath, summary: summaryPath, html: htmlPath, annotations, diagnostics, compatibility: compat };
}

/**
 * The report as the reports show it: each failed target's make.log read for every compiler error, and
 * `firstError` filled in where report.json lacks it (report.json itself is not touched).
 */
async function withDiagnostics(
  out: string,
  report: FarmReport,
): Promise<{ view: FarmReport; diagnostics: Map<string, FirstError[]> }> {
  const diagnostics = new Map<string, FirstError[]>();
  const targets: TargetResult[] = [];
  for (const target of report.targets) {
    const path = badStatuses.includes(target.status) && target.log ? insideOut(out, target.log) : undefined;
    const log = path ? await readCapped(path, MAX_LOG_BYTES) : undefined;
    if (log === undefined) {
      targets.push(target);
      continue;
    }
    const buildDir = buildDirOf({ packageName: report.module, packageVersion: targetVersion(report, target) });
    const found = compilerDiagnostics(log, { buildDir });
    diagnostics.set(target.id, found);
    targets.push(!target.firstError && found[0] ? { ...target, firstError: found[0] } : target);
  }
  return { view: { ...report, targets }, diagnostics };
}

/** `<out>/<rel>` when `rel` stays inside `out` (report paths are relative to it), else undefined. */
function insideOut(out: string, rel: string): string | undefined {
  try {
    return inside(out, rel);
  } catch {
    return undefined;
  }
}
