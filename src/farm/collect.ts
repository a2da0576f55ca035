import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { ReadEntry } from 'tar';
import { outputLimits } from '../model/limits.js';
import { writingTo } from '../util/output-errors.js';
import { describeEntry, isRegularFile, readUntrustedTar, type EntryVerdict } from '../util/untrusted-tar.js';

export interface Collected {
  modules: string[];
  symvers: boolean;
  log: boolean;
  /** Bytes cut from the middle of a make.log longer than its limit (0 when it was kept whole). */
  logCutBytes: number;
}

type Kind = 'module' | 'symvers' | 'log';
type Rule = { dest: string; limit: number; kind: Kind } | { dir: true };

/**
 * Reads the tar stream of the container's /kfarm/out and writes only allow-listed regular files into
 * `dest` (a fresh directory kfarm owns): `module/<name>.ko`, `module/Module.symvers` and `log/make.log`.
 * Anything else — links, devices, FIFOs, other names, oversized files — rejects the whole output with
 * KFARM_OUTPUT_UNSAFE and stops reading at once, so no byte of it is copied further.
 */
export async function collectOutput(archive: Readable, dest: string): Promise<Collected> {
  const collected: Collected = { modules: [], symvers: false, log: false, logCutBytes: 0 };
  await readUntrustedTar(archive, {
    what: 'build output',
    maxEntries: outputLimits.entries,
    judge: (entry, path) => judge(entry, path, dest, collected),
  });
  return collected;
}

function judge(entry: ReadEntry, path: string, dest: string, collected: Collected): EntryVerdict {
  const rule = ruleFor(path);
  if (!rule) return { reject: `unexpected ${describeEntry(entry)} ${JSON.stringify(path)}` };
  if ('dir' in rule)
    return entry.type === 'Directory'
      ? 'skip'
      : { reject: `${JSON.stringify(path)} is a ${describeEntry(entry)}, not a directory` };
  if (!isRegularFile(entry))
    return { reject: `${JSON.stringify(path)} is a ${describeEntry(entry)}, not a regular file` };
  const size = entry.size ?? 0;
  // The container cuts a long make.log to its head and tail; one still far over the limit (grown again after
  // the cut) is not worth streaming, and any other file over its limit is not a build result.
  const hardLimit = rule.kind === 'log' ? rule.limit * 4 : rule.limit;
  if (size > hardLimit) return { reject: `${JSON.stringify(path)} is ${size} bytes, over the ${hardLimit}-byte limit` };
  const file = join(dest, rule.dest);
  return (entryStream) => writingTo(file, () => writeEntry(entryStream, file, rule, collected));
}

function ruleFor(path: string): Rule | undefined {
  if (path === 'out' || path === 'out/module') return { dir: true };
  if (path === 'out/make.log') return { dest: 'log/make.log', limit: outputLimits.logBytes, kind: 'log' };
  if (path === 'out/module/Module.symvers')
    return { dest: 'module/Module.symvers', limit: outputLimits.symversBytes, kind: 'symvers' };
  const ko = /^out\/module\/([A-Za-z0-9_+-][A-Za-z0-9_.+-]*\.ko)$/.exec(path);
  if (ko?.[1]) return { dest: `module/${ko[1]}`, limit: outputLimits.moduleBytes, kind: 'module' };
  return undefined;
}

async function writeEntry(
  entry: ReadEntry,
  file: string,
  rule: { limit: number; kind: Kind },
  collected: Collected,
): Promise<void> {
  await mkdir(join(file, '..'), { recursive: true });
  // 'wx': the destination is new in a directory kfarm just made, so nothing can be followed or overwritten.
  const out = createWriteStream(file, { flags: 'wx', mode: 0o644 });
  const size = entry.size ?? 0;
  // Only make.log may be over its limit (the rest was rejected): its head and tail are what explain a failure.
  const cut = size > rule.limit ? new LogCut(rule.limit) : undefined;
  entry.on('data', (chunk: Buffer) => {
    const part = cut ? cut.head(chunk) : chunk;
    // Honour the disk's pace: a 256 MiB module must not pile up in memory behind a slow write.
    if (part.length > 0 && !out.write(part)) {
      entry.pause();
      out.once('drain', () => entry.resume());
    }
  });
  await new Promise<void>((resolve, reject) => {
    entry.on('end', () => out.end(cut?.rest(size)));
    entry.on('error', reject);
    out.on('error', reject);
    out.on('close', resolve);
  });
  await finished(out);
  if (rule.kind === 'module') collected.modules.push(file.slice(file.lastIndexOf('/') + 1));
  if (rule.kind === 'symvers') collected.symvers = true;
  if (rule.kind === 'log') {
    collected.log = true;
    collected.logCutBytes = cut ? cut.cutBytes(size) : 0;
  }
}

/**
 * Keeps the first and the last half of `limit` bytes of a long log, and a line in between saying how much
 * was cut: the start of a build and its end are where the reasons are.
 */
class LogCut {
  readonly #half: number;
  #seen = 0;
  readonly #tail: Buffer[] = [];
  #tailBytes = 0;

  constructor(limit: number) {
    // The marker line fits in 256 bytes: head, marker and tail stay within the limit.
    this.#half = Math.max(0, Math.floor((limit - 256) / 2));
  }

  /** The part of `chunk` that belongs to the head; the rest is remembered for the tail. */
  head(chunk: Buffer): Buffer {
    const take = Math.max(0, Math.min(chunk.length, this.#half - this.#seen));
    this.#seen += chunk.length;
    this.#remember(chunk.subarray(take));
    return chunk.subarray(0, take);
  }

  /** The marker and the tail, once the whole log went by. */
  rest(size: number): Buffer {
    const tail = Buffer.concat(this.#tail);
    const kept = tail.subarray(Math.max(0, tail.length - this.#half));
    const marker = `\n[kfarm: make.log is ${size} bytes; ${this.cutBytes(size)} bytes cut here, its head and tail kept]\n`;
    return Buffer.concat([Buffer.from(marker), kept]);
  }

  cutBytes(size: number): number {
    return Math.max(0, size - 2 * this.#half);
  }

  #remember(part: Buffer): void {
    if (part.length === 0) return;
    this.#tail.push(part);
    this.#tailBytes += part.length;
    while (this.#tail.length > 1 && this.#tailBytes - (this.#tail[0]?.length ?? 0) >= this.#half) {
      this.#tailBytes -= this.#tail.shift()?.length ?? 0;
    }
  }
}
