import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, lstat, mkdir, readdir, readlink, rename, rm, rmdir, symlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { KfarmError } from '../model/errors.js';
import { countStatuses, readJsonReport, writeJsonReport, type FarmReport } from '../model/report.js';
import type { TargetResult } from '../model/result.js';
import { writeReports, type WriteReportsOptions } from '../report/write-reports.js';

/** Files every output has and the merge writes anew from the merged report. */
const REGENERATED = new Set(['report.json', 'junit.xml', 'summary.md', 'report.html']);

export interface MergeOptions extends Partial<WriteReportsOptions> {
  /** Output directories of `kfarm build` (shards of one matrix, or runs on other machines). */
  dirs: string[];
  /** A new (or empty) directory: the merge appears there whole or not at all. */
  out: string;
}

/**
 * Merges build outputs into one: their files (DKMS trees, logs, packages) side by side, one report.json with
 * every target and the counts recomputed, and junit.xml and summary.md written from it. The same file or
 * target in two outputs must agree (same bytes, same status and artifacts); a conflict is an error naming both.
 */
export async function mergeOutputs(options: MergeOptions): Promise<{ report: FarmReport; reportPath: string }> {
  const out = resolve(options.out);
  const dirs = options.dirs.map((d) => resolve(d));
  await checkMergeOut(out, dirs);
  const reports = await Promise.all(dirs.map((dir) => readJsonReport(dir)));
  const report = mergeReports(reports, dirs);
  const staging = join(dirname(out), `.${basename(out)}.merge-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(staging, { recursive: true });
    const owners = new Map<string, string>();
    for (const dir of dirs) await copyTree(dir, staging, '', owners);
    await writeJsonReport(staging, report);
    await writeReports(staging, report, { sourceDir: options.sourceDir ?? '.', ...reportEnv(options) });
    await rmdir(out).catch(() => undefined);
    await rename(staging, out);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return { report, reportPath: join(out, 'report.json') };
}

function reportEnv(options: MergeOptions): Partial<WriteReportsOptions> {
  return { ...(options.env ? { env: options.env } : {}), ...(options.stdout ? { stdout: options.stdout } : {}) };
}

async function checkMergeOut(out: string, dirs: string[]): Promise<void> {
  if (dirs.length === 0) throw new KfarmError('KFARM_USAGE', 'kfarm merge: give at least one output directory');
  if (dirs.includes(out)) throw new KfarmError('KFARM_USAGE', `--out ${out}: is one of the directories merged`);
  const entries = await readdir(out).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw new KfarmError('KFARM_USAGE', `--out ${out}: ${error.message}`, { cause: error });
  });
  if (entries.length > 0) throw new KfarmError('KFARM_USAGE', `--out ${out}: exists and is not empty`);
}

/** One report of all targets; partial when any part was, timed from the first start to the last end. */
export function mergeReports(reports: FarmReport[], dirs: string[]): FarmReport {
  const first = reports[0]!;
  const seen = new Map<string, { target: TargetResult; dir: string }>();
  for (const [i, report] of reports.entries()) {
    if (report.module !== first.module || report.version !== first.version) {
      throw new KfarmError(
        'KFARM_USAGE',
        `${dirs[i]}/report.json is ${moduleOf(report)}, ${dirs[0]}/report.json ${moduleOf(first)}: not one module`,
      );
    }
    for (const target of report.targets) addTarget(seen, target, dirs[i]!);
  }
  const targets = [...seen.values()].map((s) => s.target);
  const starts = reports.map((r) => Date.parse(r.startedAt));
  const ends = reports.map((r, i) => starts[i]! + r.durationMs);
  const notRun = [...new Set(reports.flatMap((r) => r.notRun ?? []))].filter((id) => !seen.has(id));
  // Each run's own packages (a -dkms .deb) are copied side by side like its other files: list them all.
  const packages = [...new Set(reports.flatMap((r) => r.packages ?? []))].sort();
  const { notRun: _firstNotRun, packages: _firstPackages, ...base } = first;
  return {
    ...base,
    ...(packages.length > 0 ? { packages } : {}),
    startedAt: new Date(Math.min(...starts)).toISOString(),
    durationMs: Math.max(...ends) - Math.min(...starts),
    partial: reports.some((r) => r.partial),
    counts: countStatuses(targets),
    targets,
    ...(notRun.length > 0 ? { notRun } : {}),
  };
}

const moduleOf = (report: FarmReport) => `${report.module} ${report.version}`;

function addTarget(seen: Map<string, { target: TargetResult; dir: string }>, target: TargetResult, dir: string): void {
  const before = seen.get(target.id);
  if (!before) {
    seen.set(target.id, { target, dir });
    return;
  }
  const files = (t: TargetResult) => [...t.artifacts, ...(t.packages ?? [])].sort().join('\n');
  const same = before.target.status === target.status && files(before.target) === files(target);
  if (!same) {
    throw new KfarmError(
      'KFARM_USAGE',
      `${target.id}: ${before.dir}/report.json says ${before.target.status}, ${dir}/report.json says ${target.status} (or other files)`,
    );
  }
}

/**
 * Copies `from`/`rel` into `to`/`rel` without following symlinks (they are copied as links); a path two
 * outputs both have must be the same file, or the merge stops naming both.
 */
async function copyTree(from: string, to: string, rel: string, owners: Map<string, string>): Promise<void> {
  for (const entry of await readdir(join(from, rel), { withFileTypes: true })) {
    const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (rel === '' && REGENERATED.has(entry.name)) continue;
    if (entry.isDirectory()) {
      await mkdir(join(to, path), { recursive: true });
      await copyTree(from, to, path, owners);
    } else if (entry.isFile() || entry.isSymbolicLink()) {
      await copyEntry(join(from, path), join(to, path), owners, path);
    }
  }
}

async function copyEntry(source: string, dest: string, owners: Map<string, string>, path: string): Promise<void> {
  const owner = owners.get(path);
  if (owner !== undefined) {
    if (!(await sameEntry(owner, source))) {
      throw new KfarmError('KFARM_USAGE', `${owner} and ${source} differ: the outputs disagree about ${path}`);
    }
    return;
  }
  owners.set(path, source);
  const info = await lstat(source);
  if (info.isSymbolicLink()) await symlink(await readlink(source), dest);
  else await copyFile(source, dest);
}

async function sameEntry(a: string, b: string): Promise<boolean> {
  const [infoA, infoB] = await Promise.all([lstat(a), lstat(b)]);
  if (infoA.isSymbolicLink() || infoB.isSymbolicLink()) {
    return infoA.isSymbolicLink() && infoB.isSymbolicLink() && (await readlink(a)) === (await readlink(b));
  }
  return infoA.size === infoB.size && (await sha256(a)) === (await sha256(b));
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
