import { lutimes, mkdir, open, symlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import type { ReadEntry } from 'tar';
import { KfarmError } from '../model/errors.js';
import { describeEntry, isRegularFile, readUntrustedTar, type EntryVerdict } from '../util/untrusted-tar.js';

/** A DKMS package's source, unpacked: what `kfarm build <file>.deb` builds. */
export interface DebSource {
  /** The unpacked `/usr/src/<module>-<version>` tree. */
  sourceDir: string;
  package: string;
  version: string;
  /** Its `Depends:` as build dependencies: first alternative of each, no versions, without DKMS packages. */
  buildDeps: string[];
  /** The `*-dkms` packages it depends on: DKMS modules, built with `--with-module`, not installed by apt. */
  moduleDeps: string[];
}

/** .debs of DKMS packages are small (zfs-dkms: 3 MB); a bigger file is not one. */
const MAX_DEB_BYTES = 512 * 1024 * 1024;
const MAX_ENTRIES = 100_000;

/**
 * Unpacks the `/usr/src/<module>-<version>` tree of a `*-dkms` .deb into `into`, reading the package as untrusted
 * input: only regular files, directories and symlinks that stay inside the tree (others are left out), nothing
 * outside usr/src.
 * A file that is not a .deb, or a package without exactly one dkms.conf tree, is the user's error (exit 2);
 * messages name it as `label` (default: the file).
 */
export async function unpackDkmsDeb(path: string, into: string, label = path): Promise<DebSource> {
  const file = label;
  const members = readAr(await readDeb(path), file);
  const control = await decompress(member(members, 'control.tar', file), file);
  const fields = parseControl(await controlFile(control, file));
  const data = await decompress(member(members, 'data.tar', file), file);
  const trees = await extractSourceTrees(data, into, file);
  if (trees.length !== 1) {
    const found = trees.length === 0 ? 'none' : `${trees.length} (${trees.join(', ')})`;
    throw new KfarmError(
      'KFARM_CONFIG_INVALID',
      `${file}: expected one /usr/src/<module>-<version>/dkms.conf, found ${found}: is it a DKMS package?`,
    );
  }
  return {
    sourceDir: join(into, 'usr/src', trees[0] as string),
    package: fields.get('package') ?? '',
    version: fields.get('version') ?? '',
    ...splitDepends(fields.get('depends') ?? ''),
  };
}

/**
 * `dkms (>= 3), libc6-dev | libc-dev, perl:any, nvidia-kernel-dkms | nvidia-open-kernel-dkms` → build deps
 * libc6-dev, perl; module deps nvidia-kernel-dkms. Installing a `*-dkms` package into a builder would hand it to
 * dkms (and pull dkms in): kfarm builds such a dependency itself, given with `--with-module`.
 */
export function splitDepends(depends: string): { buildDeps: string[]; moduleDeps: string[] } {
  const names = depends
    .split(',')
    .map((group) => (group.split('|')[0] ?? '').trim().split(/[\s(]/)[0] ?? '')
    .map((name) => name.replace(/:any$/, ''))
    .filter((name) => name !== '' && name !== 'dkms');
  return {
    buildDeps: names.filter((name) => !name.endsWith('-dkms')),
    moduleDeps: names.filter((name) => name.endsWith('-dkms')),
  };
}

async function readDeb(file: string): Promise<Buffer> {
  const handle = await open(file, 'r').catch((cause: NodeJS.ErrnoException) => {
    throw new KfarmError('KFARM_USAGE', `${file}: ${cause.code === 'ENOENT' ? 'no such file' : cause.message}`);
  });
  try {
    const { size } = await handle.stat();
    if (size > MAX_DEB_BYTES) throw new KfarmError('KFARM_CONFIG_INVALID', `${file}: over 512 MiB: not a DKMS package`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** The members of an ar archive (a .deb), by name. */
function readAr(bytes: Buffer, file: string): Map<string, Buffer> {
  const bad = (why: string) => new KfarmError('KFARM_CONFIG_INVALID', `${file}: not a Debian package (${why})`);
  if (bytes.subarray(0, 8).toString('latin1') !== '!<arch>\n') throw bad('no ar header');
  const members = new Map<string, Buffer>();
  let at = 8;
  while (at + 60 <= bytes.length) {
    const header = bytes.subarray(at, at + 60).toString('latin1');
    if (header.slice(58, 60) !== '`\n') throw bad(`malformed member header at byte ${at}`);
    const name = header.slice(0, 16).trim().replace(/\/$/, '');
    const size = Number(header.slice(48, 58).trim());
    if (!Number.isSafeInteger(size) || at + 60 + size > bytes.length) throw bad(`member ${name} is cut short`);
    members.set(name, bytes.subarray(at + 60, at + 60 + size));
    at += 60 + size + (size % 2);
  }
  return members;
}

function member(members: Map<string, Buffer>, prefix: string, file: string): { name: string; data: Buffer } {
  for (const [name, data] of members) if (name.startsWith(prefix)) return { name, data };
  throw new KfarmError('KFARM_CONFIG_INVALID', `${file}: not a Debian package (no ${prefix}.* member)`);
}

async function decompress({ name, data }: { name: string; data: Buffer }, file: string): Promise<Buffer> {
  if (name.endsWith('.tar')) return data;
  if (name.endsWith('.gz')) return gunzipSync(data);
  const tool = name.endsWith('.xz') ? 'xz' : name.endsWith('.zst') ? 'zstd' : undefined;
  if (!tool) throw new KfarmError('KFARM_CONFIG_INVALID', `${file}: ${name}: compression kfarm does not read`);
  const run = await execa(tool, ['-dc'], { input: data, encoding: 'buffer', maxBuffer: 4 * MAX_DEB_BYTES });
  return Buffer.from(run.stdout);
}

async function controlFile(tar: Buffer, file: string): Promise<string> {
  let text: string | undefined;
  await readUntrustedTar(Readable.from([tar]), {
    what: `${file} control.tar`,
    maxEntries: 1000,
    judge: (entry, path): EntryVerdict =>
      path.replace(/^\.\//, '') === 'control' && isRegularFile(entry)
        ? async (e) => {
            text = (await collect(e)).toString('utf8');
          }
        : 'skip',
  });
  if (text === undefined) throw new KfarmError('KFARM_CONFIG_INVALID', `${file}: not a Debian package (no control)`);
  return text;
}

/** deb822 fields of one stanza, lower-cased names, folded lines joined. */
function parseControl(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  let last: string | undefined;
  for (const line of text.split('\n')) {
    if (/^\s/.test(line) && last) fields.set(last, `${fields.get(last) ?? ''} ${line.trim()}`);
    const match = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
    if (match) fields.set((last = (match[1] as string).toLowerCase()), (match[2] as string).trim());
  }
  return fields;
}

/** Extracts `usr/src/**` of the data tarball; resolves with the names of the trees that hold a dkms.conf. */
async function extractSourceTrees(tar: Buffer, into: string, file: string): Promise<string[]> {
  const trees = new Set<string>();
  await readUntrustedTar(Readable.from([tar]), {
    what: file,
    maxEntries: MAX_ENTRIES,
    judge: (entry, raw) => {
      const path = posix.normalize(raw.replace(/^\.\//, ''));
      if (path.startsWith('/') || path === '..' || path.startsWith('../'))
        return { reject: `${raw} leaves the package` };
      if (!path.startsWith('usr/src/') || path.split('/').length < 4) return 'skip';
      if (/^usr\/src\/[^/]+\/dkms\.conf$/.test(path)) trees.add(path.split('/')[2] as string);
      return writeEntry(entry, path, into);
    },
  });
  return [...trees].sort();
}

/**
 * Files and links keep the package's mtimes: the tree's newest one dates the builds (SOURCE_DATE_EPOCH), so
 * building the same package twice gives the same bytes.
 */
function writeEntry(entry: ReadEntry, path: string, into: string): EntryVerdict {
  const dest = join(into, path);
  const mtime = entry.mtime ?? new Date(0);
  // An entry with no data must still be resumed, or the tar parser waits for it forever.
  if (entry.type === 'Directory')
    return async (e) => {
      e.resume();
      await mkdir(dest, { recursive: true });
    };
  if (isRegularFile(entry)) {
    const mode = (entry.mode ?? 0o644) & 0o755;
    return async (e) => {
      await mkdir(dirname(dest), { recursive: true });
      await writeFile(dest, await collect(e), { mode });
      await utimes(dest, mtime, mtime);
    };
  }
  if (entry.type === 'SymbolicLink') {
    const target = entry.linkpath ?? '';
    const tree = path.split('/').slice(0, 3).join('/');
    const resolved = posix.normalize(posix.join(posix.dirname(path), target));
    // Packages link docs out of the tree (README.gz -> ../../share/doc/…): such links are left out, never made.
    if (target.startsWith('/') || !resolved.startsWith(`${tree}/`)) return 'skip';
    return async (e) => {
      e.resume();
      await mkdir(dirname(dest), { recursive: true });
      await symlink(target, dest);
      await lutimes(dest, mtime, mtime);
    };
  }
  return { reject: `${path} is a ${describeEntry(entry)}` };
}

async function collect(entry: ReadEntry): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of entry) chunks.push(chunk);
  return Buffer.concat(chunks);
}
