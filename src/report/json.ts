import { join } from 'node:path';
import type { TargetResult } from '../farm/types.js';
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
}

export function countStatuses(targets: TargetResult[]): FarmReport['counts'] {
  const counts: FarmReport['counts'] = { built: 0, failed: 0, 'expected-failure': 0, skipped: 0, cached: 0, timeout: 0, oom: 0 };
  for (const target of targets) counts[target.status]++;
  return counts;
}

export async function writeJsonReport(out: string, report: FarmReport): Promise<string> {
  const path = join(out, 'report.json');
  await writeFileAtomic(path, JSON.stringify(report, null, 2) + '\n');
  return path;
}
