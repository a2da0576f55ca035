import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { ReadEntry } from 'tar';
import { outputLimits } from '../model/limits.js';
import { describeEntry, isRegularFile, readUntrustedTar, type EntryVerdict } from '../util/untrusted-tar.js';

export interface Collected {
  modules: string[];
  symvers: boolean;
  log: boolean;
  logTruncated: boolean;
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
  const collected: Collected = { modules: [], symvers: false, log: false, logTruncated: false };
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
  // A long make.log is cut to the limit; one several times over it is not a log worth streaming through.
  const hardLimit = rule.kind === 'log' ? rule.limit * 4 : rule.limit;
  if (size > hardLimit) return { reject: `${JSON.stringify(path)} is ${size} bytes, over the ${hardLimit}-byte limit` };
  return (file) => writeEntry(file, join(dest, rule.dest), rule, collected);
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
  let written = 0;
  entry.on('data', (chunk: Buffer) => {
    if (written >= rule.limit) return;
    const part = written + chunk.length > rule.limit ? chunk.subarray(0, rule.limit - written) : chunk;
    written += part.length;
    // Honour the disk's pace: a 256 MiB module must not pile up in memory behind a slow write.
    if (!out.write(part)) {
      entry.pause();
      out.once('drain', () => entry.resume());
    }
  });
  await new Promise<void>((resolve, reject) => {
    entry.on('end', () => out.end());
    entry.on('error', reject);
    out.on('error', reject);
    out.on('close', resolve);
  });
  await finished(out);
  if (rule.kind === 'module') collected.modules.push(file.slice(file.lastIndexOf('/') + 1));
  if (rule.kind === 'symvers') collected.symvers = true;
  if (rule.kind === 'log') {
    collected.log = true;
    collected.logTruncated = written < (entry.size ?? 0);
  }
}
