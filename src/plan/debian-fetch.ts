import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout } from 'node:timers/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { execa } from 'execa';
import { KfarmError, errorText } from '../model/errors.js';
import { fetchError, fetchOk } from './debian-http.js';
import { kernelsFromPackages, parsePackages, type PackageStanza, type SuiteIndex } from './debian-packages.js';
import { fetchRelease, releaseEntry } from './debian-release-file.js';
import type { DebianSuite } from './debian-releases.js';

const INDEX_PATH = 'main/binary-amd64/Packages.xz';
/** How long to wait before fetching an index pair again after a mismatch. */
const MISMATCH_RETRY_MS = 3000;
const SYMPTOMS = new Set(['EPIPE', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED']);

export interface FetchIndexOptions {
  /** false skips the InRelease signature check (recorded unsigned test archives); hashes are still checked. */
  verifySignature?: boolean;
  signal?: AbortSignal;
}

/** The URL a suite's index is fetched from; also its cache key. */
export function suiteUrl(suite: DebianSuite): string {
  return `${suite.archiveUrl}/dists/${suite.name}`;
}

/**
 * Downloads and parses one suite's amd64 Packages index. The compressed bytes are hashed and piped through
 * `xz -dc` as they arrive and the text is parsed as it comes out, so memory stays flat; the hash and size are then
 * checked against InRelease. Every failure (HTTP, network, xz, hash, an unexpectedly empty index) throws an error
 * naming the URL: a partial kernel list must never pass for the whole one.
 */
export async function fetchSuiteIndex(suite: DebianSuite, options: FetchIndexOptions = {}): Promise<SuiteIndex> {
  const { result: index, fail } = await readVerifiedIndex(suite, INDEX_PATH, options, (stanzas) =>
    kernelsFromPackages(stanzas, suite.name),
  );
  if (index.packages === 0 && !suite.mayBeEmpty) throw fail('the index lists no packages');
  return index;
}

/**
 * Streams the stanzas of `dists/<suite>/<path>` (a Packages.xz) into `consume` while hashing it, then checks the
 * bytes against the suite's InRelease: `consume`'s result is returned only for an index the archive signed.
 */
export async function readVerifiedIndex<T>(
  suite: DebianSuite,
  path: string,
  options: FetchIndexOptions,
  consume: (stanzas: AsyncGenerator<PackageStanza>) => Promise<T>,
): Promise<{ result: T; fail: (problem: string) => KfarmError }> {
  try {
    return await readIndexOnce(suite, path, options, consume);
  } catch (error) {
    // The archive publishes a suite's index and its InRelease one after the other: a pair fetched while it
    // updates can disagree. Fetched again a moment later they agree; a second mismatch is real.
    if (!(error instanceof IndexMismatch)) throw error;
    await setTimeout(MISMATCH_RETRY_MS, undefined, options.signal ? { signal: options.signal } : {});
    return readIndexOnce(suite, path, options, consume);
  }
}

/** An index whose bytes do not match the InRelease fetched beside it. */
class IndexMismatch extends KfarmError {}

async function readIndexOnce<T>(
  suite: DebianSuite,
  path: string,
  options: FetchIndexOptions,
  consume: (stanzas: AsyncGenerator<PackageStanza>) => Promise<T>,
): Promise<{ result: T; fail: (problem: string) => KfarmError }> {
  const base = suiteUrl(suite);
  const url = `${base}/${path}`;
  const fail = (problem: string, cause?: unknown): KfarmError =>
    new KfarmError('KFARM_INDEX_UNAVAILABLE', `cannot fetch ${url}: ${problem}`, cause ? { cause } : {});

  // Both downloads run at once; the first failure is reported and cancels the other.
  const abort = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, abort.signal]) : abort.signal;
  let first: { error: unknown } | undefined;
  const guard = <U>(promise: Promise<U>): Promise<U> =>
    promise.catch((error: unknown) => {
      first ??= { error };
      abort.abort();
      throw error;
    });
  const [download, release] = await Promise.allSettled([
    guard(downloadIndex(url, signal, fail, consume)),
    guard(fetchRelease(`${base}/InRelease`, { verifySignature: options.verifySignature, signal })),
  ]);
  if (first) throw first.error;
  const { result, received } = (download as PromiseFulfilledResult<{ result: T; received: Received }>).value;
  const expected = releaseEntry((release as PromiseFulfilledResult<string>).value, path);
  if (!expected) throw fail(`${base}/InRelease does not list ${path}`);
  if (received.size !== expected.size || received.sha256 !== expected.sha256) {
    const mismatch = fail(
      `does not match ${base}/InRelease (got ${received.size} bytes, sha256 ${received.sha256}; ` +
        `expected ${expected.size} bytes, sha256 ${expected.sha256})`,
    );
    throw new IndexMismatch(mismatch.code, mismatch.message);
  }
  return { result, fail };
}

interface Received {
  sha256: string;
  size: number;
}

async function downloadIndex<T>(
  url: string,
  signal: AbortSignal,
  fail: (problem: string, cause?: unknown) => KfarmError,
  consume: (stanzas: AsyncGenerator<PackageStanza>) => Promise<T>,
): Promise<{ result: T; received: Received }> {
  const response = await fetchOk(url, signal);
  const hash = createHash('sha256');
  let size = 0;
  const xz = execa('xz', ['-dc'], { buffer: { stdout: false }, cancelSignal: signal });
  xz.stdout.setEncoding('utf8');

  // One failure brings others down after it: a cut download truncates xz's input, truncated input cuts the text
  // short mid-stanza, killing xz breaks the pipe. Report the most upstream failure, which is the cause.
  const failures: { download?: KfarmError; xz?: KfarmError; parse?: KfarmError } = {};
  let killed = false;
  const stop = (): void => {
    killed = true;
    xz.kill();
  };
  const download = pipeline(
    Readable.fromWeb(response.body as NodeReadableStream<Uint8Array>),
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    xz.stdin,
  ).catch((error: unknown) => {
    // A write into an xz that has exited is a symptom; xz's exit status (or whoever killed it) has the cause.
    if (!SYMPTOMS.has(String((error as { code?: unknown }).code))) failures.download = fetchError(url, error, signal);
    stop();
  });
  let parsed = false;
  const parse = consume(parsePackages(xz.stdout)).then(
    (result) => {
      parsed = true;
      return result;
    },
    (error: unknown) => {
      failures.parse = fail(`malformed index: ${errorText(error)}`, error);
      stop();
      return undefined;
    },
  );
  const decompress = xz.catch((error: unknown) => {
    // Killed, or its output abandoned, after another failure: not news. Its own failures (bad data, not installed) are.
    const { isTerminated, exitCode, code } = error as { isTerminated?: unknown; exitCode?: unknown; code?: unknown };
    if (killed && (isTerminated === true || exitCode === 0 || code === 'ABORT_ERR')) return;
    failures.xz = fail(`xz -dc failed: ${xzReason(error)}`, error);
  });
  const [, result] = await Promise.all([download, parse, decompress]);
  if (signal.aborted) throw fetchError(url, signal.reason, signal);
  const failure = failures.download ?? failures.xz ?? failures.parse;
  if (failure) throw failure;
  if (!parsed) throw fail('no index parsed');
  return { result: result as T, received: { sha256: hash.digest('hex'), size } };
}

function xzReason(error: unknown): string {
  const { code, stderr, shortMessage } = error as { code?: unknown; stderr?: unknown; shortMessage?: unknown };
  if (code === 'ENOENT') return 'xz is not installed (install xz-utils)';
  if (typeof stderr === 'string' && stderr.trim()) return stderr.trim();
  return typeof shortMessage === 'string' ? shortMessage : errorText(error);
}
