import { KfarmError, errorText } from '../model/errors.js';

/**
 * A failed fetch. `retryable` says whether asking again may help: a network failure, a stall or a 5xx may
 * pass on the next try; a 404 or an interruption will not.
 */
export class FetchError extends KfarmError {
  readonly retryable: boolean;

  constructor(message: string, retryable: boolean, cause?: unknown) {
    super('KFARM_INDEX_UNAVAILABLE', message, cause === undefined ? {} : { cause });
    this.retryable = retryable;
  }
}

/** GET `url`, failing with an error that names it unless the server answers 2xx with a body. */
export async function fetchOk(url: string, signal?: AbortSignal): Promise<Response & { body: ReadableStream }> {
  let response: Response;
  try {
    response = await fetch(url, signal ? { signal } : {});
  } catch (error) {
    throw fetchError(url, error, signal);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    const retryable = response.status >= 500 || response.status === 429;
    throw new FetchError(`cannot fetch ${url}: HTTP ${response.status}`, retryable);
  }
  return response as Response & { body: ReadableStream };
}

export async function fetchText(url: string, signal?: AbortSignal): Promise<string> {
  const response = await fetchOk(url, signal);
  try {
    return await response.text();
  } catch (error) {
    throw fetchError(url, error, signal);
  }
}

/** undici reports every network failure as "fetch failed"; the reason (ECONNREFUSED, reset…) is in `cause`. */
export function fetchError(url: string, error: unknown, signal?: AbortSignal): KfarmError {
  if (signal?.aborted)
    return new KfarmError('KFARM_INTERRUPTED', `interrupted while fetching ${url}`, { cause: error });
  if (error instanceof KfarmError) return error;
  const cause = (error as { cause?: unknown }).cause;
  const reason = cause instanceof Error ? errorText(cause) : errorText(error);
  return new FetchError(`cannot fetch ${url}: ${reason}`, true, error);
}

/**
 * An abort signal that fires when `touch()` has not been called for `ms`: undici waits 300 s for headers and
 * again for each body chunk, far longer than a healthy archive ever pauses, so a stalled connection is cut
 * here and retried instead of holding a build for five minutes.
 */
export function stallWatch(
  ms: number,
  outer?: AbortSignal,
): { signal: AbortSignal; touch: () => void; stalled: () => boolean; dispose: () => void } {
  const stall = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const touch = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => stall.abort(new Error(`no data for ${ms / 1000} s`)), ms).unref();
  };
  touch();
  const signal = outer ? AbortSignal.any([outer, stall.signal]) : stall.signal;
  return { signal, touch, stalled: () => stall.signal.aborted, dispose: () => clearTimeout(timer) };
}
