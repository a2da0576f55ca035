import type { DkmsPlan } from '../dkms/plan.js';
import type { Target, TargetResult, TargetStatus } from '../model/result.js';

/** A finished target: its result, and (once the build named its package) where its stage goes in the DKMS tree. */
export interface TargetOutcome {
  result: TargetResult;
  plan?: Pick<DkmsPlan, 'packageName' | 'packageVersion'>;
}

type Identity = Pick<TargetResult, 'id' | 'distro' | 'release' | 'kernel' | 'arch' | 'flavour' | 'artifacts'>;

/** The fields every result of this target has, whatever happened to it. */
export function baseResult(target: Target): Identity {
  const { id, distro, release, kernel, arch, flavour } = target;
  return { id, distro, release, kernel, arch, flavour, artifacts: [] };
}

export function resultOf(
  target: Target,
  status: TargetStatus,
  durationMs: number,
  extra: Partial<TargetResult> = {},
): TargetResult {
  return { ...baseResult(target), status, durationMs, ...extra };
}

export function failedResult(target: Target, error: string, durationMs: number): TargetResult {
  return resultOf(target, 'failed', durationMs, { error });
}
