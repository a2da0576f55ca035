import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { setTimeout as sleep } from 'node:timers/promises';
import { KfarmError } from '../model/errors.js';
import { FetchError, fetchError, fetchOk, stallWatch } from './debian-http.js';

export interface Expected {
  sha256: string;
  size: number;
}

export interface DownloadOptions {
  /** Cut the connection when no byte arrived for this long (headers included), then try again. */
  stallMs?: number;
  /** Tries in all, for failures that may pass (network, stall, 5xx); a 404 or a bad checksum fails at once. */
  attempts?: number;
  /** Pause before try n is n × this. */
  backoffMs?: number;
}

const defaults: Required<DownloadOptions> = { stallMs: 30_000, attempts: 3, backoffMs: 1000 };

/**
 * Downloads `url` to `dest`, hashing as it streams into a temporary file beside it; only bytes matching the
 * index's size and SHA256 are renamed into place, so `dest` is complete and verified or absent. Failures
 * (HTTP, network, checksum) are KfarmErrors naming the URL; the last try's error is the one thrown.
 */
export async function downloadVerified(
  url: string,
  dest: string,
  expected: Expected,
  signal?: AbortSignal,
  options: DownloadOptions = {},
): Promise<void> {
  const { stallMs, attempts, backoffMs } = { ...defaults, ...options };
  for (let attempt = 1; ; attempt++) {
    try {
      await downloadOnce(url, dest, expected, stallMs, signal);
      return;
    } catch (error) {
      const retryable = error instanceof FetchError && error.retryable && !signal?.aborted;
      if (!retryable || attempt >= attempts) throw error;
      await sleep(attempt * backoffMs, undefined, signal ? { signal } : {}).catch(() => undefined);
    }
  }
}

async function downloadOnce(
  url: string,
  dest: string,
  expected: Expected,
  stallMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const temp = `${dest}.part-${process.pid}-${randomBytes(4).toString('hex')}`;
  const watch = stallWatch(stallMs, signal);
  const failed = (error: unknown): KfarmError =>
    watch.stalled() && !signal?.aborted
      ? new FetchError(`cannot fetch ${url}: stalled (no data for ${stallMs / 1000} s)`, true, error)
      : fetchError(url, error, signal);
  try {
    const response = await fetchOk(url, watch.signal).catch((error: unknown) => {
      throw failed(error);
    });
    const received = await streamHashed(response.body, temp, watch.touch, watch.signal).catch((error: unknown) => {
      throw failed(error);
    });
    if (received.size !== expected.size || received.sha256 !== expected.sha256) {
      throw new KfarmError(
        'KFARM_INDEX_UNAVAILABLE',
        `cannot fetch ${url}: checksum mismatch (got ${received.size} bytes, sha256 ${received.sha256}; ` +
          `the index says ${expected.size} bytes, sha256 ${expected.sha256})`,
      );
    }
    await rename(temp, dest);
  } finally {
    watch.dispose();
    await rm(temp, { force: true });
  }
}

async function streamHashed(
  body: ReadableStream,
  path: string,
  touch: () => void,
  signal: AbortSignal,
): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      touch();
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  await pipeline(Readable.fromWeb(body as NodeReadableStream<Uint8Array>), tap, createWriteStream(path), { signal });
  return { size, sha256: hash.digest('hex') };
}
