import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import { KfarmError, errorText } from '../model/errors.js';

/** What to do with one entry: reject the whole archive (the reason), pass over it, or consume its bytes. */
export type EntryVerdict = { reject: string } | 'skip' | ((entry: ReadEntry) => Promise<void>);

export interface UntrustedTarRules {
  /** What the archive is, for messages: `build output`, `package output`. */
  what: string;
  maxEntries: number;
  judge: (entry: ReadEntry, path: string) => EntryVerdict;
}

/**
 * Reads a tar stream that came out of a container (whatever a module's Makefile put there) and never extracts
 * it: every entry is judged by `rules.judge`; the first rejection (or a malformed archive, or too many
 * entries) stops reading at once and throws KFARM_OUTPUT_UNSAFE, so no byte after the bad entry is copied.
 * Errors of the consumers themselves (a disk that fills up) are rethrown as they are.
 */
export async function readUntrustedTar(archive: Readable, rules: UntrustedTarRules): Promise<void> {
  const consumers: Promise<void>[] = [];
  let entries = 0;
  let rejection: KfarmError | undefined;
  const parser = new Parser({ strict: true });
  const reject = (reason: string) => {
    rejection ??= new KfarmError('KFARM_OUTPUT_UNSAFE', `${rules.what} rejected: ${reason}`);
    archive.destroy(rejection);
    parser.abort(rejection);
  };
  parser.on('entry', (entry: ReadEntry) => {
    const verdict = rejection
      ? 'skip'
      : ++entries > rules.maxEntries
        ? { reject: `more than ${rules.maxEntries} entries` }
        : rules.judge(entry, entry.path.replace(/\/+$/, ''));
    if (typeof verdict === 'function') {
      const consumed = verdict(entry);
      consumed.catch((error: unknown) => archive.destroy(error as Error));
      consumers.push(consumed);
      return;
    }
    if (verdict !== 'skip') reject(verdict.reject);
    entry.resume();
  });
  parser.on('warn', (code: string, message: string) => reject(`malformed archive (${code}: ${message})`));
  try {
    await pipeline(archive, parser);
  } catch (error) {
    if (rejection) throw rejection;
    const consumerFailure = await firstRejection(consumers);
    if (consumerFailure instanceof Error) throw consumerFailure;
    throw new KfarmError('KFARM_OUTPUT_UNSAFE', `${rules.what} could not be read: ${errorText(error)}`, {
      cause: error,
    });
  }
  await Promise.all(consumers);
  if (rejection) throw rejection;
}

/** The entry type as a person would name it, for rejection messages. */
export function describeEntry(entry: ReadEntry): string {
  const names: Record<string, string> = {
    SymbolicLink: 'symbolic link',
    Link: 'hard link',
    FIFO: 'FIFO',
    CharacterDevice: 'character device',
    BlockDevice: 'block device',
    Directory: 'directory',
    File: 'file',
    OldFile: 'file',
  };
  return names[entry.type] ?? entry.type;
}

export function isRegularFile(entry: ReadEntry): boolean {
  return entry.type === 'File' || entry.type === 'OldFile';
}

async function firstRejection(promises: Promise<void>[]): Promise<unknown> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  return failed?.reason;
}
