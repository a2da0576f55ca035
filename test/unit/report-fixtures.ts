import type { TargetResult, TargetStatus } from '../../src/model/result.js';
import { countStatuses, REPORT_SCHEMA_VERSION, type FarmReport } from '../../src/model/report.js';

/** A target result for report tests; `id` is `debian/<release>/<kernel>`. */
export function result(
  release: string,
  kernel: string,
  status: TargetStatus,
  extra: Partial<TargetResult> = {},
): TargetResult {
  return {
    id: `debian/${release}/${kernel}`,
    distro: 'debian',
    release,
    kernel,
    arch: 'x86_64',
    status,
    durationMs: 1500,
    artifacts: [],
    ...extra,
  };
}

export function report(targets: TargetResult[], extra: Partial<FarmReport> = {}): FarmReport {
  return {
    schemaVersion: REPORT_SCHEMA_VERSION,
    module: 'kf',
    version: '1.0',
    startedAt: '2026-11-22T02:53:20.609Z',
    durationMs: 61_000,
    partial: false,
    counts: countStatuses(targets),
    targets,
    ...extra,
  };
}

/** Twelve trixie-ish kernels: 6.12.90+deb13-amd64 … 6.12.101+deb13-amd64. */
export function kernels(n: number, base = 90): string[] {
  return Array.from({ length: n }, (_, i) => `6.12.${base + i}+deb13-amd64`);
}
