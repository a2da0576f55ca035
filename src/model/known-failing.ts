import type { TargetResult } from './result.js';

/** A matrix `known-failing` entry: failures of matching targets are expected, not red. */
export interface KnownFailing {
  /** A glob (`*`, `?`) on the kernel release, or on the target id when it contains `/`. */
  pattern: string;
  reason: string;
}

export function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

export function knownFailure(
  result: Pick<TargetResult, 'id' | 'kernel'>,
  known: readonly KnownFailing[],
): KnownFailing | undefined {
  return known.find((k) => globToRegExp(k.pattern).test(k.pattern.includes('/') ? result.id : result.kernel));
}

/**
 * A failure that the matrix expects becomes `expected-failure` (the reason is kept); a target expected to
 * fail that built anyway stays `built` but carries the reason, so reports can say the entry may be stale.
 */
export function applyKnownFailing(result: TargetResult, known: readonly KnownFailing[]): TargetResult {
  const match = knownFailure(result, known);
  if (!match) return result;
  if (result.status === 'failed' || result.status === 'timeout' || result.status === 'oom') {
    return { ...result, status: 'expected-failure', expected: match.reason };
  }
  return { ...result, expected: match.reason };
}
