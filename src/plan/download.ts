import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { KfarmError } from '../model/errors.js';
import { fetchError, fetchOk } from './debian-http.js';

export interface Expected {
  sha256: string;
  size: number;
}

/**
 * Downloads `url` to `dest`, hashing as it streams into a temporary file beside it; only bytes matching the
 * index's size and SHA256 are renamed into place, so `dest` is complete and verified or absent. Failures
 * (HTTP, network, checksum) are KfarmErrors naming the URL.
 */
export async function downloadVerified(
  url: string,
  dest: string,
  expected: Expected,
  signal?: AbortSignal,
): Promise<void> {
  const temp = `${dest}.part-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const response = await fetchOk(url, signal);
    const hash = createHash('sha256');
    let size = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        hash.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(
        Readable.fromWeb(response.body as NodeReadableStream<Uint8Array>),
        tap,
        createWriteStream(temp),
        signal ? { signal } : {},
      );
    } catch (error) {
      throw fetchError(url, error, signal);
    }
    const sha256 = hash.digest('hex');
    if (size !== expected.size || sha256 !== expected.sha256) {
      throw new KfarmError(
        'KFARM_INDEX_UNAVAILABLE',
        `cannot fetch ${url}: checksum mismatch (got ${size} bytes, sha256 ${sha256}; ` +
          `the index says ${expected.size} bytes, sha256 ${expected.sha256})`,
      );
    }
    await rename(temp, dest);
  } finally {
    await rm(temp, { force: true });
  }
}
