/** Exit codes are a contract with scripts and CI: keep them in sync with the README and `--help`. */
export const ExitCode = {
  ok: 0,
  targetFailed: 1,
  usage: 2,
  engineUnavailable: 3,
  interrupted: 130,
} as const;

export type KfarmErrorCode =
  | 'KFARM_USAGE'
  | 'KFARM_CONFIG_INVALID'
  | 'KFARM_TARGET_UNKNOWN'
  | 'KFARM_INDEX_UNAVAILABLE'
  | 'KFARM_ENGINE_UNAVAILABLE'
  | 'KFARM_IMAGE_FAILED'
  | 'KFARM_OUTPUT_UNSAFE'
  | 'KFARM_INTERRUPTED'
  | 'KFARM_INTERNAL';

const defaultExit: Record<KfarmErrorCode, number> = {
  KFARM_USAGE: ExitCode.usage,
  KFARM_CONFIG_INVALID: ExitCode.usage,
  KFARM_TARGET_UNKNOWN: ExitCode.usage,
  KFARM_INDEX_UNAVAILABLE: ExitCode.usage,
  KFARM_ENGINE_UNAVAILABLE: ExitCode.engineUnavailable,
  KFARM_IMAGE_FAILED: ExitCode.targetFailed,
  KFARM_OUTPUT_UNSAFE: ExitCode.targetFailed,
  KFARM_INTERRUPTED: ExitCode.interrupted,
  KFARM_INTERNAL: ExitCode.targetFailed,
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
