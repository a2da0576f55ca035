import { deflateRawSync } from 'node:zlib';
import { KfarmError } from '../model/errors.js';

/**
 * Byte-reproducible archive writers: ustar (with GNU long names when a path does not fit), gzip with a fixed
 * header, and `ar` as dpkg writes it. Every header field is explicit — owner root:root (0/0), modes as given
 * (callers normalise them), one mtime for everything — and entries are sorted, so the same inputs always give
 * the same bytes, whatever the host's umask, user, clock or readdir order.
 */

export interface TarEntry {
  /** Relative path without a leading `./` (added by the writer) and without a trailing slash. '' is the root. */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  data?: Buffer;
  /** Symlink target. */
  target?: string;
}

const BLOCK = 512;
/** GNU tar's default record size (blocking factor 20); the archive is padded to a multiple of it. */
const RECORD = 20 * BLOCK;

/** Sorts by path components, so a directory always precedes its contents (as `tar --sort=name`). */
export function comparePaths(a: string, b: string): number {
  const pa = a === '' ? [] : a.split('/');
  const pb = b === '' ? [] : b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = Buffer.from(pa[i] ?? '');
    const y = Buffer.from(pb[i] ?? '');
    const c = Buffer.compare(x, y);
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

/** Adds an entry for every parent directory not listed (mode 0755). */
export function withParents(entries: TarEntry[]): TarEntry[] {
  const have = new Set(entries.map((e) => e.path));
  const out = [...entries];
  for (const entry of entries) {
    const parts = entry.path.split('/');
    for (let i = 0; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!have.has(dir)) {
        have.add(dir);
        out.push({ path: dir, type: 'dir', mode: 0o755 });
      }
    }
  }
  return out;
}

/**
 * A tar archive of `entries` (sorted here) with member names `./<path>` (`./` for the root, `./dir/` for
 * directories), as `tar -C dir -cf - .` and dpkg-deb name them.
 */
export function tarArchive(entries: TarEntry[], mtime: number): Buffer {
  const sorted = [...entries].sort((a, b) => comparePaths(a.path, b.path));
  const seen = new Set<string>();
  const blocks: Buffer[] = [];
  for (const entry of sorted) {
    if (seen.has(entry.path))
      throw new KfarmError('KFARM_INTERNAL', `duplicate archive member ${JSON.stringify(entry.path)}`);
    seen.add(entry.path);
    if (
      entry.path.startsWith('/') ||
      entry.path.split('/').some((p) => p === '..' || p === '.' || (p === '' && entry.path !== ''))
    ) {
      throw new KfarmError('KFARM_INTERNAL', `bad archive member path ${JSON.stringify(entry.path)}`);
    }
    const name = entry.path === '' ? './' : `./${entry.path}${entry.type === 'dir' ? '/' : ''}`;
    const data = entry.type === 'file' ? (entry.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    const linkname = entry.type === 'symlink' ? (entry.target ?? '') : '';
    if (Buffer.byteLength(linkname) > 100) blocks.push(...gnuLong('K', linkname, mtime));
    const split = splitName(name);
    if (!split) blocks.push(...gnuLong('L', name, mtime));
    const [prefix, base] = split ?? ['', Buffer.from(name).subarray(0, 100)];
    blocks.push(
      header({
        name: base,
        prefix,
        mode: entry.mode,
        size: data.length,
        mtime,
        typeflag: entry.type === 'file' ? '0' : entry.type === 'dir' ? '5' : '2',
        linkname: Buffer.byteLength(linkname) > 100 ? Buffer.from(linkname).subarray(0, 100) : linkname,
      }),
    );
    if (data.length > 0) blocks.push(data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK));
  }
  blocks.push(Buffer.alloc(2 * BLOCK));
  const size = blocks.reduce((n, b) => n + b.length, 0);
  blocks.push(Buffer.alloc((RECORD - (size % RECORD)) % RECORD));
  return Buffer.concat(blocks);
}

/** ustar's name/prefix split (name ≤ 100 bytes, prefix ≤ 155, split at a slash), or undefined. */
function splitName(name: string): [string, string | Buffer] | undefined {
  const bytes = Buffer.byteLength(name);
  if (bytes <= 100) return ['', name];
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== '/' || i === name.length - 1) continue;
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '') return [prefix, rest];
  }
  return undefined;
}

/** A GNU `././@LongLink` member carrying a long name ('L') or link target ('K'), as GNU tar writes them. */
function gnuLong(type: 'L' | 'K', value: string, mtime: number): Buffer[] {
  const data = Buffer.concat([Buffer.from(value), Buffer.alloc(1)]);
  return [
    header({
      name: '././@LongLink',
      prefix: '',
      mode: 0o644,
      size: data.length,
      mtime,
      typeflag: type,
      linkname: '',
      gnu: true,
    }),
    data,
    Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK),
  ];
}

function header(h: {
  name: string | Buffer;
  prefix: string;
  mode: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string | Buffer;
  gnu?: boolean;
}): Buffer {
  const block = Buffer.alloc(BLOCK);
  const put = (offset: number, length: number, value: string | Buffer) => {
    const bytes = typeof value === 'string' ? Buffer.from(value) : value;
    if (bytes.length > length) throw new KfarmError('KFARM_INTERNAL', `tar header field too long: ${String(value)}`);
    bytes.copy(block, offset);
  };
  const octal = (offset: number, length: number, value: number) => {
    const text = value.toString(8).padStart(length - 1, '0');
    if (text.length > length - 1) throw new KfarmError('KFARM_INTERNAL', `tar header value out of range: ${value}`);
    put(offset, length, `${text}\0`);
  };
  put(0, 100, h.name);
  octal(100, 8, h.mode & 0o7777);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, h.size);
  octal(136, 12, h.mtime);
  block.fill(0x20, 148, 156);
  put(156, 1, h.typeflag);
  put(157, 100, h.linkname);
  // GNU tar marks its own ('L'/'K') headers with the old GNU magic; the rest are POSIX ustar.
  put(257, 8, h.gnu ? 'ustar  \0' : 'ustar\x0000');
  put(265, 32, 'root');
  put(297, 32, 'root');
  if (!h.gnu) {
    octal(329, 8, 0);
    octal(337, 8, 0);
  }
  put(345, 155, h.prefix);
  let sum = 0;
  for (const byte of block) sum += byte;
  put(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return block;
}

const crcTable = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(data: Buffer): number {
  let c = 0xffffffff;
  for (const byte of data) c = (crcTable[(c ^ byte) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * gzip as `gzip -9n` frames it: no file name, mtime 0, XFL 2 (maximum compression), OS 3 (Unix) whatever the
 * host. The deflate stream comes from Node's bundled zlib, so it is stable for a given Node version; hash the
 * uncompressed data too when comparing across Node versions.
 */
export function gzip(data: Buffer): Buffer {
  const head = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x02, 0x03]);
  const tail = Buffer.alloc(8);
  tail.writeUInt32LE(crc32(data), 0);
  tail.writeUInt32LE(data.length >>> 0, 4);
  return Buffer.concat([head, deflateRawSync(data, { level: 9, memLevel: 9 }), tail]);
}

/** An `ar` archive as dpkg-deb writes it: member names without a slash, owner 0/0, mode 100644, one mtime. */
export function arArchive(members: { name: string; data: Buffer }[], mtime: number): Buffer {
  const parts: Buffer[] = [Buffer.from('!<arch>\n')];
  for (const member of members) {
    if (member.name.length > 16 || /[/\s]/.test(member.name))
      throw new KfarmError('KFARM_INTERNAL', `bad ar member name ${member.name}`);
    const head =
      member.name.padEnd(16) +
      String(mtime).padEnd(12) +
      '0'.padEnd(6) +
      '0'.padEnd(6) +
      '100644'.padEnd(8) +
      String(member.data.length).padEnd(10) +
      '`\n';
    parts.push(Buffer.from(head, 'latin1'), member.data);
    if (member.data.length % 2 === 1) parts.push(Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}
