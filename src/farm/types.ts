import type { KernelTarget } from '../plan/targets.js';

export type TargetStatus = 'built' | 'failed' | 'skipped' | 'cached' | 'timeout' | 'oom';

/** One kernel to build for, fully resolved by discovery. */
export type Target = KernelTarget;
export interface TargetResult {
  id: string;
  distro: string;
  release: string;
  kernel: string;
  arch: string;
  status: TargetStatus;
  durationMs: number;
  /** Paths relative to the output directory. */
  artifacts: string[];
  /** make.log, relative to the output directory, when the build got that far. */
  log?: string;
  error?: string;
  /** The evaluated make command (after the leading-`make` rewrite). */
  makeCommand?: string;
  image?: string;
}
