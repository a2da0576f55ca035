import { KfarmError, errorText } from '../model/errors.js';

/** Socket-level failures: the engine is gone (or was never there), not answering a request badly. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
]);

export function isConnectionError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, syscall, message } = error as { code?: unknown; syscall?: unknown; message?: unknown };
  if (typeof code === 'string' && CONNECTION_CODES.has(code)) return true;
  // A unix socket that does not exist: `connect ENOENT /var/run/docker.sock`.
  if (code === 'ENOENT' && syscall === 'connect') return true;
  return typeof message === 'string' && /socket hang up|premature close/i.test(message);
}

export function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { statusCode?: number }).statusCode === 404;
}

/** KFARM_ENGINE_UNAVAILABLE: `problem` (one clause naming the engine), then how to get an engine. */
export function engineUnavailable(problem: string, cause?: unknown): KfarmError {
  return new KfarmError(
    'KFARM_ENGINE_UNAVAILABLE',
    `${problem}: start one with \`sudo scripts/setup-host.sh\` (or \`sudo dockerd &\`), ` +
      'or point DOCKER_HOST at a running engine',
    cause === undefined ? {} : { cause },
  );
}

/**
 * Runs one engine request with a time limit and turns its failure into kfarm's failure model: connection
 * errors and an unanswered request → KFARM_ENGINE_UNAVAILABLE; an abort by the caller → the caller's reason;
 * any other engine answer → KFARM_ENGINE_ERROR naming what was asked.
 */
export async function engineCall<T>(
  endpoint: string,
  what: string,
  request: (signal: AbortSignal) => Promise<T>,
  options: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<T> {
  const limit = options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs);
  const signals = [options.signal, limit].filter((s): s is AbortSignal => s !== undefined);
  const signal = signals.length === 0 ? new AbortController().signal : AbortSignal.any(signals);
  try {
    return await request(signal);
  } catch (error) {
    throw engineFailure(endpoint, what, error, { limit, caller: options.signal, timeoutMs: options.timeoutMs });
  }
}

/** The error an engine request's failure becomes (see engineCall). */
export function engineFailure(
  endpoint: string,
  what: string,
  error: unknown,
  context: { limit?: AbortSignal | undefined; caller?: AbortSignal | undefined; timeoutMs?: number | undefined } = {},
): unknown {
  if (error instanceof KfarmError) return error;
  if (context.caller?.aborted) return context.caller.reason as unknown;
  if (context.limit?.aborted) {
    const seconds = Math.round((context.timeoutMs ?? 0) / 1000);
    return engineUnavailable(`the container engine at ${endpoint} did not answer (${what}) within ${seconds} s`);
  }
  if (isConnectionError(error)) {
    return engineUnavailable(`cannot reach the container engine at ${endpoint} (${firstLine(error)})`, error);
  }
  return new KfarmError('KFARM_ENGINE_ERROR', `${what}: ${firstLine(error)}`, { cause: error });
}

function firstLine(error: unknown): string {
  return (
    errorText(error)
      .split('\n')[0]
      ?.replace(/^\(HTTP code \d+\)\s*/, '') ?? ''
  );
}
