import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import { KfarmError } from '../errors.js';

/** Limits on what a build may hand back; a module's Makefile is arbitrary code. */
export const collectLimits = {
  moduleBytes: 256 * 1024 * 1024,
  symversBytes: 16 * 1024 * 1024,
  logBytes: 64 * 1024 * 1024,
  entries: 1000,
};

export interface Collected {
  modules: string[];
  symvers: boolean;
  log: boolean;
  logTruncated: boolean;
}

type Rule = { dest: string; limit: number; kind: 'module' | 'symvers' | 'log' } | { dir: true };

/**
 * Reads the tar stream of the container's /kfarm/out and writes only allow-listed regular files into
 * `dest` (a fresh directory kfarm owns): `module/<name>.ko`, `module/Module.symvers` and `log/make.log`.
 * Anything else — links, devices, FIFOs, other names, oversized files — rejects the whole output with
 * KFARM_OUTPUT_UNSAFE and stops reading at once, so no byte of it is copied further.
 */
export async function collectOutput(archive: Readable, dest: string): Promise<Collected> {
  const collected: Collected = { modules: [], symvers: false, log: false, logTruncated: false };
  const writes: Promise<void>[] = [];
  let entries = 0;
  let rejection: KfarmError | undefined;
  const parser = new Parser({ strict: true });

  const reject = (reason: string) => {
    rejection ??= new KfarmError('KFARM_OUTPUT_UNSAFE', `build output rejected: ${reason}`);
    archive.destroy(rejection);
    parser.abort(rejection);
  };

  parser.on('entry', (entry: ReadEntry) => {
    if (rejection || ++entries > collectLimits.entries) {
      if (!rejection) reject(`more than ${collectLimits.entries} entries`);
      entry.resume();
      return;
    }
    const path = entry.path.replace(/\/+$/, '');
    const rule = ruleFor(path);
    if (!rule) return (reject(`unexpected ${describe(entry)} ${JSON.stringify(path)}`), entry.resume());
    if ('dir' in rule) {
      if (entry.type !== 'Directory') reject(`${JSON.stringify(path)} is a ${describe(entry)}, not a directory`);
      return entry.resume();
    }
    if (entry.type !== 'File' && entry.type !== 'OldFile') {
      return (reject(`${JSON.stringify(path)} is a ${describe(entry)}, not a regular file`), entry.resume());
    }
    const size = entry.size ?? 0;
    // A long make.log is cut to the limit; one several times over it is not a log worth streaming through.
    const hardLimit = rule.kind === 'log' ? rule.limit * 4 : rule.limit;
    if (size > hardLimit) {
      return (reject(`${JSON.stringify(path)} is ${size} bytes, over the ${hardLimit}-byte limit`), entry.resume());
    }
    writes.push(writeEntry(entry, join(dest, rule.dest), rule.limit, collected, rule.kind));
  });

  parser.on('warn', (code: string, message: string) => reject(`malformed archive (${code}: ${message})`));

  try {
    await pipeline(archive, parser);
  } catch (error) {
    if (rejection) throw rejection;
    throw new KfarmError('KFARM_OUTPUT_UNSAFE', `build output could not be read: ${(error as Error).message}`, {
      cause: error,
    });
  }
  await Promise.all(writes);
  if (rejection) throw rejection;
  return collected;
}

function ruleFor(path: string): Rule | undefined {
  if (path === 'out' || path === 'out/module') return { dir: true };
  if (path === 'out/make.log') return { dest: 'log/make.log', limit: collectLimits.logBytes, kind: 'log' };
  if (path === 'out/module/Module.symvers')
    return { dest: 'module/Module.symvers', limit: collectLimits.symversBytes, kind: 'symvers' };
  const ko = /^out\/module\/([A-Za-z0-9_+-][A-Za-z0-9_.+-]*\.ko)$/.exec(path);
  if (ko?.[1]) return { dest: `module/${ko[1]}`, limit: collectLimits.moduleBytes, kind: 'module' };
  return undefined;
}

async function writeEntry(
  entry: ReadEntry,
  file: string,
  limit: number,
  collected: Collected,
  kind: 'module' | 'symvers' | 'log',
): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true });
  // 'wx': the destination is new in a directory kfarm just made, so nothing can be followed or overwritten.
  const out = createWriteStream(file, { flags: 'wx', mode: 0o644 });
  let written = 0;
  entry.on('data', (chunk: Buffer) => {
    if (written >= limit) return;
    const part = written + chunk.length > limit ? chunk.subarray(0, limit - written) : chunk;
    written += part.length;
    out.write(part);
  });
  await new Promise<void>((resolve, reject) => {
    entry.on('end', () => out.end(resolve));
    entry.on('error', reject);
    out.on('error', reject);
  });
  if (kind === 'module') collected.modules.push(file.slice(file.lastIndexOf('/') + 1));
  if (kind === 'symvers') collected.symvers = true;
  if (kind === 'log') {
    collected.log = true;
    collected.logTruncated = written < (entry.size ?? 0);
  }
}

function describe(entry: ReadEntry): string {
  const names: Record<string, string> = {
    SymbolicLink: 'symbolic link',
    Link: 'hard link',
    FIFO: 'FIFO',
    CharacterDevice: 'character device',
    BlockDevice: 'block device',
    Directory: 'directory',
    File: 'file',
  };
  return names[entry.type] ?? entry.type;
}
