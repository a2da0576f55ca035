export type { Target, KernelTarget } from './target.js';
export type TargetStatus = 'built' | 'failed' | 'expected-failure' | 'skipped' | 'cached' | 'timeout' | 'oom';

/** Statuses that make `kfarm build` exit 1. */
export const badStatuses: readonly TargetStatus[] = ['failed', 'timeout', 'oom'];

/** The first compiler diagnostic of a failed build, mapped back to the user's source tree when possible. */
export interface FirstError {
  /** Path relative to the module source tree (or as printed, when it is outside it, e.g. a kernel header). */
  file?: string;
  line?: number;
  column?: number;
  /** The diagnostic text without the location, e.g. `'foo' undeclared (first use in this function)`. */
  message: string;
  /**
   * Where the compiler located it when that is outside the module's tree (`/usr/src/linux-headers-…/init.h:180:22`):
   * `file`/`line` are then the place in the tree gcc's context leads back to (a macro's use, an #include, a function).
   */
  context?: string;
}

export interface VerifyResult {
  status: 'loaded' | 'load-failed' | 'boot-failed' | 'timeout';
  /** Kernel console log, relative to the output directory. */
  log?: string;
  /** The kernel's own words on failure, e.g. `kf_x: Unknown symbol foo (err -2)`. */
  reason?: string;
  durationMs: number;
}

export interface TargetResult {
  id: string;
  distro: string;
  release: string;
  kernel: string;
  arch: string;
  flavour?: string;
  /**
   * The module version this target built, when it is not the report's: a `debian:<name>` source builds each
   * release's own package, whose versions may differ. Absent otherwise (then it is the report's `version`).
   */
  version?: string;
  status: TargetStatus;
  durationMs: number;
  /** Paths relative to the output directory. */
  artifacts: string[];
  /** make.log, relative to the output directory, when the build got that far. */
  log?: string;
  /** Set when make.log was over 64 MiB: the bytes cut from its middle (its head and tail are kept). */
  logCutBytes?: number;
  /** One line: why the target did not build (or which BUILD_EXCLUSIVE rule skipped it). */
  error?: string;
  firstError?: FirstError;
  /** For `expected-failure`: the matrix's known-failing reason. */
  expected?: string;
  /** The evaluated make command (after the leading-`make` rewrite). */
  makeCommand?: string;
  image?: string;
  /** Where the time went, in ms: image preparation (0 when reused), container start, copy in, dkms.conf evaluation, build, copy out. */
  phases?: Partial<Record<'image' | 'start' | 'copyIn' | 'evaluate' | 'build' | 'copyOut', number>>;
  verify?: VerifyResult;
  /** Package files made for this target (`kfarm package`, `build --package`), relative to the output directory. */
  packages?: string[];
}
