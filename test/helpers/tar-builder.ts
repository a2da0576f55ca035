import { Readable } from 'node:stream';
import { Header } from 'tar';

export interface RawEntry {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'FIFO' | 'CharacterDevice';
  data?: Buffer | string;
  /** Declared size, when it should differ from the data (a huge file whose bytes never need reading). */
  size?: number;
  linkpath?: string;
}

/** Builds a raw tar byte stream entry by entry, including entries no well-behaved tool would write. */
export function rawTar(entries: RawEntry[], options: { trailingBytes?: number } = {}): Readable {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.data ?? '');
    const type = entry.type ?? 'File';
    const header = new Header({
      path: entry.path,
      type,
      size: entry.size ?? (type === 'File' ? data.length : 0),
      mode: type === 'Directory' ? 0o755 : 0o644,
      mtime: new Date(0),
      uid: 0,
      gid: 0,
      ...(entry.linkpath ? { linkpath: entry.linkpath } : {}),
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block);
    if (data.length > 0) {
      blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
  }
  if (options.trailingBytes) {
    // Pretend the archive goes on: data for a declared-huge entry, produced lazily so nothing buffers it.
    let left = options.trailingBytes;
    const head = Buffer.concat(blocks);
    let sentHead = false;
    return new Readable({
      read() {
        if (!sentHead) {
          sentHead = true;
          this.push(head);
          return;
        }
        if (left <= 0) return void this.push(null);
        const n = Math.min(left, 1 << 20);
        left -= n;
        this.push(Buffer.alloc(n));
      },
    });
  }
  blocks.push(Buffer.alloc(1024));
  return Readable.from([Buffer.concat(blocks)]);
}
