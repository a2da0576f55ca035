import { appendFile, mkdir, open } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { FirstError, TargetResult } from '../farm/types.js';
import { badStatuses } from '../farm/types.js';
import { writeFileAtomic } from '../util/atomic.js';
import { compilerDiagnostics } from './compiler-errors.js';
import { githubAnnotations, sourcePrefixFor } from './github.js';
import type { FarmReport } from './json.js';
import { JUNIT_TAIL_LINES, lastLines, renderJunit } from './junit.js';
import { renderSummary } from './markdown.js';

/** make.log bytes read for diagnostics (the first errors are what matters; a runaway log is cut). */
export const MAX_LOG_BYTES = 64 * 1024 ** 2;
/** Bytes read from the end of a make.log for the JUnit tail. */
const TAIL_BYTES = 256 * 1024;

export interface WriteReportsOptions {
  /** The module source directory as given on the command line (for annotation paths). */
  sourceDir: string;
  /** Default process.env: GITHUB_STEP_SUMMARY, GITHUB_ACTIONS, GITHUB_WORKSPACE. */
  env?: NodeJS.ProcessEnv;
  /** Where the target was built in its container, e.g. `/var/lib/dkms/<module>/<version>/build`. */
  buildDirOf: (target: TargetResult) => string;
  /** Where annotations are printed under GitHub Actions (default: process.stdout). */
  stdout?: (text: string) => void;
}

export interface WrittenReports {
  /** Path of junit.xml. */
  junit: string;
  /** Path of summary.md. */
  summary: string;
  /** The `::error` workflow commands (printed only when GITHUB_ACTIONS is 'true'). */
  annotations: string[];
  /** Every error of each failed target's make.log, by target id. */
  diagnostics: Map<string, FirstError[]>;
}

/**
 * Writes `<out>/junit.xml` and `<out>/summary.md` (atomically), appends the summary to
 * `$GITHUB_STEP_SUMMARY` when set, and under GitHub Actions prints error annotations. Targets whose
 * `firstError` is unset get the first error of their make.log in these reports (report.json is not touched).
 */
export async function writeReports(
  out: string,
  report: FarmReport,
  opts: WriteReportsOptions,
): Promise<WrittenReports> {
  const env = opts.env ?? process.env;
  const diagnostics = new Map<string, FirstError[]>();
  const targets: TargetResult[] = [];
  for (const target of report.targets) {
    let enriched = target;
    if (badStatuses.includes(target.status) && target.log) {
      const path = inside(out, target.log);
      const log = path ? await readCapped(path, MAX_LOG_BYTES) : undefined;
      if (log !== undefined) {
        const found = compilerDiagnostics(log, { buildDir: opts.buildDirOf(target) });
        diagnostics.set(target.id, found);
        if (!target.firstError && found[0]) enriched = { ...target, firstError: found[0] };
      }
    }
    targets.push(enriched);
  }
  const view: FarmReport = { ...report, targets };

  const junit = await renderJunit(view, {
    tail: async (log) => {
      const path = inside(out, log);
      return path ? tailFile(path, JUNIT_TAIL_LINES) : '';
    },
  });
  const summary = renderSummary(view);
  await mkdir(out, { recursive: true });
  const junitPath = join(out, 'junit.xml');
  const summaryPath = join(out, 'summary.md');
  await writeFileAtomic(junitPath, junit);
  await writeFileAtomic(summaryPath, summary);
  if (env.GITHUB_STEP_SUMMARY) await appendFile(env.GITHUB_STEP_SUMMARY, `${summary}\n`);

  const annotations = githubAnnotations(view, diagnostics, { sourcePrefix: sourcePrefixFor(opts.sourceDir, env) });
  if (env.GITHUB_ACTIONS === 'true' && annotations.length > 0) {
    const write = opts.stdout ?? ((text: string) => process.stdout.write(text));
    write(annotations.map((line) => `${line}\n`).join(''));
  }
  return { junit: junitPath, summary: summaryPath, annotations, diagnostics };
}

/** `<out>/<rel>` when `rel` stays inside `out` (report paths are relative to it). */
function inside(out: string, rel: string): string | undefined {
  if (isAbsolute(rel)) return undefined;
  const path = resolve(out, rel);
  const back = relative(resolve(out), path);
  return back === '' || back.startsWith('..') || isAbsolute(back) ? undefined : path;
}

/** The first `max` bytes of a file as UTF-8, or undefined when it cannot be read. */
export async function readCapped(path: string, max: number): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
    const { size } = await handle.stat();
    const length = Math.min(size, max);
    const buffer = Buffer.alloc(length);
    let offset = 0;
    while (offset < length) {
      const { bytesRead } = await handle.read(buffer, offset, length - offset, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    return buffer.toString('utf8', 0, offset);
  } catch {
    return undefined;
  } finally {
    await handle?.close();
  }
}

/** The last `lines` lines of a file, reading at most its last 256 KiB; '' when it cannot be read. */
export async function tailFile(path: string, lines: number, maxBytes = TAIL_BYTES): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
    const { size } = await handle.stat();
    const start = Math.max(0, size - maxBytes);
    const buffer = Buffer.alloc(size - start);
    let offset = 0;
    while (offset < buffer.length) {
      const { bytesRead } = await handle.read(buffer, offset, buffer.length - offset, start + offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    let text = buffer.toString('utf8', 0, offset);
    // Reading from the middle: the first line is partial (and may start mid-character).
    if (start > 0) text = text.slice(text.indexOf('\n') + 1);
    return lastLines(text, lines);
  } catch {
    return '';
  } finally {
    await handle?.close();
  }
}
