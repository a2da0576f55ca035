import { KfarmError, errorText } from '../model/errors.js';

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
    throw new KfarmError('KFARM_INDEX_UNAVAILABLE', `cannot fetch ${url}: HTTP ${response.status}`);
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
  const cause = (error as { cause?: unknown }).cause;
  const reason = cause instanceof Error ? errorText(cause) : errorText(error);
  return new KfarmError('KFARM_INDEX_UNAVAILABLE', `cannot fetch ${url}: ${reason}`, { cause: error });
}
