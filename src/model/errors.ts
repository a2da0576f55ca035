/** Exit codes are a contract with scripts and CI: keep them in sync with the README and `--help`. */
export const ExitCode = {
  ok: 0,
  targetFailed: 1,
  usage: 2,
  engineUnavailable: 3,
  /** The distribution's archive could not be read: a package index or a package download failed. */
  archiveUnavailable: 4,
  /** A bug in kfarm (sysexits' EX_SOFTWARE): never a verdict on the user's input or kernels. */
  internal: 70,
  interrupted: 130,
} as const;

export type KfarmErrorCode =
  | 'KFARM_USAGE'
  | 'KFARM_CONFIG_INVALID'
  | 'KFARM_TARGET_UNKNOWN'
  | 'KFARM_INDEX_UNAVAILABLE'
  | 'KFARM_DOWNLOAD_FAILED'
  | 'KFARM_ENGINE_UNAVAILABLE'
  | 'KFARM_ENGINE_ERROR'
  | 'KFARM_IMAGE_FAILED'
  | 'KFARM_OUTPUT_UNSAFE'
  | 'KFARM_OUTPUT_FAILED'
  | 'KFARM_PACKAGE_FAILED'
  | 'KFARM_MALFORMED'
  | 'KFARM_INTERRUPTED'
  | 'KFARM_INTERNAL';

const defaultExit: Record<KfarmErrorCode, number> = {
  KFARM_USAGE: ExitCode.usage,
  KFARM_CONFIG_INVALID: ExitCode.usage,
  KFARM_TARGET_UNKNOWN: ExitCode.usage,
  KFARM_INDEX_UNAVAILABLE: ExitCode.archiveUnavailable,
  KFARM_DOWNLOAD_FAILED: ExitCode.archiveUnavailable,
  KFARM_ENGINE_UNAVAILABLE: ExitCode.engineUnavailable,
  // The engine answered, but not as asked (a conflict, a missing image): one target's problem when it
  // happens in a build, the run's when it happens outside one.
  KFARM_ENGINE_ERROR: ExitCode.targetFailed,
  KFARM_IMAGE_FAILED: ExitCode.targetFailed,
  KFARM_OUTPUT_UNSAFE: ExitCode.targetFailed,
  // Writing kfarm's own output (the --out directory, reports) failed: disk full, read-only, not a directory.
  KFARM_OUTPUT_FAILED: ExitCode.usage,
  KFARM_PACKAGE_FAILED: ExitCode.targetFailed,
  // A file kfarm reads is not what it claims to be (an ELF module, a cpio archive, a Packages stanza).
  KFARM_MALFORMED: ExitCode.targetFailed,
  KFARM_INTERRUPTED: ExitCode.interrupted,
  KFARM_INTERNAL: ExitCode.internal,
};

/**
 * The one error type kfarm throws on purpose. `message` is a single line fit for a terminal; details
 * (engine responses, command output) travel in `cause`.
 */
export class KfarmError extends Error {
  readonly code: KfarmErrorCode;
  readonly exitCode: number;

  constructor(code: KfarmErrorCode, message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KfarmError';
    this.code = code;
    this.exitCode = options.exitCode ?? defaultExit[code];
  }
}

export function isKfarmError(error: unknown, code?: KfarmErrorCode): error is KfarmError {
  return error instanceof KfarmError && (code === undefined || error.code === code);
}

/** The text of any thrown value, without stack: for one-line reports. */
export function errorText(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
