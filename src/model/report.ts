import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KfarmError } from '../model/errors.js';
import type { TargetResult } from '../model/result.js';
import { writeFileAtomic } from '../util/atomic.js';

export const REPORT_SCHEMA_VERSION = 1;

export interface FarmReport {
  schemaVersion: typeof REPORT_SCHEMA_VERSION;
  module: string;
  version: string;
  startedAt: string;
  durationMs: number;
  /** True when the run was interrupted and the report covers only the targets that finished. */
  partial: boolean;
  counts: Record<TargetResult['status'], number>;
  targets: TargetResult[];
  /** Targets never built because the run stopped early (`--fail-fast`, interruption). */
  notRun?: string[];
  /** Packages of the whole run rather than of one target (the `<module>-dkms` .deb), relative to the output. */
  packages?: string[];
  /** Kernel compatibility: each failure's kernel ranges per release and flavour (src/report/compat.ts). */
  compatibility?: CompatRange[];
}

/**
 * Kernel ranges of one failure signature within one release and flavour, kernels in Debian's version order:
 * "builds up to `lastGood`, fails from `firstFailed` with `signature`".
 */
export interface CompatRange {
  release: string;
  flavour: string;
  /** `build` for a build failure, `load` for a module that built but did not load. */
  stage: 'build' | 'load';
  status: TargetResult['status'] | 'load-failed';
  /** The first compiler error (file:line:col: message), else the reason, or the kernel's line for `load`. */
  signature: string;
  /** Consecutive runs of failing kernels, oldest first: the first and last kernel of each. */
  ranges: [string, string][];
  kernels: number;
  /** The newest kernel older than the first failure that built (for `load`: that loaded). */
  lastGood?: string;
  firstFailed: string;
  /** The oldest kernel newer than the last failure that built (or loaded) again. */
  goodAgain?: string;
}

export function countStatuses(targets: TargetResult[]): FarmReport['counts'] {
  const counts: FarmReport['counts'] = {
    built: 0,
    failed: 0,
    'expected-failure': 0,
    skipped: 0,
    cached: 0,
    timeout: 0,
    oom: 0,
  };
  for (const target of targets) counts[target.status]++;
  return counts;
}

export async function writeJsonReport(out: string, report: FarmReport): Promise<string> {
  const path = join(out, 'report.json');
  await writeFileAtomic(path, JSON.stringify(report, null, 2) + '\n');
  return path;
}

/** `<out>/report.json`, checked enough that a wrong directory or an old/foreign file is a one-line usage error. */
export async function readJsonReport(out: string): Promise<FarmReport> {
  const path = join(out, 'report.json');
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const missing = (error as { code?: unknown }).code === 'ENOENT';
    throw new KfarmError(
      'KFARM_USAGE',
      `${path}: ${missing ? 'not found (run `kfarm build --out` into this directory first)' : (error as Error).message}`,
      { cause: error },
    );
  }
  let report: unknown;
  try {
    report = JSON.parse(text);
  } catch (error) {
    throw new KfarmError('KFARM_USAGE', `${path}: not valid JSON (${(error as Error).message})`, { cause: error });
  }
  const r = report as Partial<FarmReport> | null;
  if (typeof r !== 'object' || r === null || r.schemaVersion !== REPORT_SCHEMA_VERSION) {
    throw new KfarmError('KFARM_USAGE', `${path}: not a kfarm report with schemaVersion ${REPORT_SCHEMA_VERSION}`);
  }
  if (typeof r.module !== 'string' || typeof r.version !== 'string' || !Array.isArray(r.targets)) {
    throw new KfarmError('KFARM_USAGE', `${path}: malformed report (module, version and targets are required)`);
  }
  for (const t of r.targets) {
    const ok =
      typeof t?.id === 'string' &&
      typeof t.kernel === 'string' &&
      typeof t.release === 'string' &&
      typeof t.arch === 'string' &&
      Array.isArray(t.artifacts);
    if (!ok) throw new KfarmError('KFARM_USAGE', `${path}: malformed target entry ${JSON.stringify(t?.id ?? t)}`);
    // Paths come from the file: keep them inside the output directory.
    for (const a of t.artifacts) {
      if (typeof a !== 'string' || a.startsWith('/') || a.split('/').includes('..'))
        throw new KfarmError(
          'KFARM_USAGE',
          `${path}: ${t.id}: artifact path ${JSON.stringify(a)} leaves the output directory`,
        );
    }
    if (!/^[0-9][A-Za-z0-9.+~_-]*$/.test(t.kernel) || !/^[a-z0-9_]+$/.test(t.arch))
      throw new KfarmError('KFARM_USAGE', `${path}: ${t.id}: malformed kernel or arch`);
    if (t.version !== undefined && (typeof t.version !== 'string' || /[/\0]|^\.\.?$/.test(t.version)))
      throw new KfarmError('KFARM_USAGE', `${path}: ${t.id}: malformed version`);
  }
  for (const p of [...(r.packages ?? []), ...r.targets.flatMap((t) => t.packages ?? [])]) {
    if (typeof p !== 'string' || !/^packages\/[^/]+$/.test(p) || p === 'packages/..' || p === 'packages/.')
      throw new KfarmError('KFARM_USAGE', `${path}: package path ${JSON.stringify(p)} is not a file in packages/`);
  }
  if (/[/\0]|^\.\.?$/.test(r.module) || /[/\0]|^\.\.?$/.test(r.version))
    throw new KfarmError('KFARM_USAGE', `${path}: malformed module name or version`);
  return report as FarmReport;
}

/** The module version a target built: its own when the run built several (a `debian:` source), else the report's. */
export function targetVersion(report: Pick<FarmReport, 'version'>, target: Pick<TargetResult, 'version'>): string {
  return target.version ?? report.version;
}

/** `module version` for titles, every version named when the targets built several (`zfs 2.1.11, 2.3.9`). */
export function moduleTitle(report: Pick<FarmReport, 'module' | 'version' | 'targets'>): string {
  const versions = new Set([report.version, ...report.targets.map((t) => targetVersion(report, t))]);
  return `${report.module} ${[...versions].filter(Boolean).join(', ')}`.trim();
}
