/**
 * A writer for the "newc" cpio format (`cpio -H newc`), the only format the kernel unpacks as an initramfs.
 * Each entry is a 110-byte ASCII header (magic `070701` and thirteen 8-digit hex fields), the NUL-terminated
 * name padded to a multiple of 4, then the data padded to a multiple of 4. The archive ends with an entry
 * named `TRAILER!!!`.
 */

import { KfarmError } from '../model/errors.js';

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Uint8Array; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

/**
 * Serialises `entries` in order (parents must come before their children, as the kernel creates them in
 * archive order). Paths are relative (`bin/busybox`, no leading `/`); owner root, mtime 0, so the same
 * input gives the same bytes.
 */
export function writeCpio(entries: readonly CpioEntry[]): Buffer {
  const chunks: Buffer[] = [];
  let ino = 1;
  const seen = new Set<string>();
  for (const entry of entries) {
    const path = checkPath(entry.path);
    if (seen.has(path)) throw new KfarmError('KFARM_INTERNAL', `cpio: duplicate entry ${path}`);
    seen.add(path);
    switch (entry.type) {
      case 'dir':
        chunks.push(
          ...record({ ino: ino++, mode: S_IFDIR | (entry.mode ?? 0o755), nlink: 2, name: path, data: Buffer.alloc(0) }),
        );
        break;
      case 'file':
        chunks.push(
          ...record({
            ino: ino++,
            mode: S_IFREG | (entry.mode ?? 0o644),
            nlink: 1,
            name: path,
            data: Buffer.from(entry.data),
          }),
        );
        break;
      case 'symlink':
        chunks.push(
          ...record({ ino: ino++, mode: S_IFLNK | 0o777, nlink: 1, name: path, data: Buffer.from(entry.target) }),
        );
        break;
      case 'char':
        chunks.push(
          ...record({
            ino: ino++,
            mode: S_IFCHR | (entry.mode ?? 0o600),
            nlink: 1,
            name: path,
            data: Buffer.alloc(0),
            rdev: [entry.major, entry.minor],
          }),
        );
        break;
    }
  }
  chunks.push(...record({ ino: 0, mode: 0, nlink: 1, name: 'TRAILER!!!', data: Buffer.alloc(0) }));
  return Buffer.concat(chunks);
}

interface CpioRecord {
  ino: number;
  mode: number;
  nlink: number;
  name: string;
  data: Buffer;
  rdev?: [number, number];
}

function record(r: CpioRecord): Buffer[] {
  const name = Buffer.from(`${r.name}\0`);
  const fields = [
    r.ino,
    r.mode,
    0,
    0,
    r.nlink,
    0,
    r.data.length,
    0,
    0,
    r.rdev?.[0] ?? 0,
    r.rdev?.[1] ?? 0,
    name.length,
    0,
  ];
  for (const field of fields) {
    if (!Number.isInteger(field) || field < 0 || field > 0xffffffff)
      throw new KfarmError('KFARM_MALFORMED', `cpio: field out of range in ${r.name}`);
  }
  const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`, 'latin1');
  return [header, name, pad(header.length + name.length), r.data, pad(r.data.length)];
}

function pad(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function checkPath(path: string): string {
  if (
    path === '' ||
    path.startsWith('/') ||
    path.split('/').some((part) => part === '' || part === '.' || part === '..') ||
    path.includes('\0')
  ) {
    throw new KfarmError('KFARM_INTERNAL', `cpio: bad path ${JSON.stringify(path)}`);
  }
  return path;
}
