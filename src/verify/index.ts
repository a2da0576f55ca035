/**
 * The QEMU load test: boots each built target's own Debian kernel and loads its modules there.
 *
 *   verifyReport(out, report, options)    verify, record `verify` on each target, rewrite report.json
 *   verifyTargets(out, report, options)   the same without touching report.json: id → VerifyResult
 */
import { writeJsonReport, type FarmReport } from '../model/report.js';
import type { VerifyResult } from '../model/result.js';
import { verifyTargets, withVerifyResults, type VerifyOptions } from './verify.js';

export {
  verifyTargets,
  withVerifyResults,
  verifyLogPath,
  DEFAULT_VERIFY_TIMEOUT_MS,
  VERIFIABLE,
  type VerifyEvent,
  type VerifyOptions,
} from './verify.js';
export { verifyProgress, describeVerify } from './progress.js';
export { KernelStore, type KernelFiles, type KernelEvent } from './kernel-store.js';
export { detectAccelerator, type Accelerator } from './qemu.js';
export { parseVerifyParams } from './params.js';

export interface VerifiedReport {
  report: FarmReport;
  results: Map<string, VerifyResult>;
  reportPath: string;
}

/** Verifies the report's built targets and writes report.json (atomically) with their `verify` results. */
export async function verifyReport(
  out: string,
  report: FarmReport,
  options: VerifyOptions = {},
): Promise<VerifiedReport> {
  const results = await verifyTargets(out, report, options);
  const updated = withVerifyResults(report, results);
  const reportPath = await writeJsonReport(out, updated);
  return { report: updated, results, reportPath };
}
