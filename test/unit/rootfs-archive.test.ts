import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { archiveWriter } from '../../src/images/rootfs-archive.js';

const path = process.env['PATH'];
afterEach(() => {
  process.env['PATH'] = path;
});

/** Writes `data` through a writer the way a bootstrap does (piped, with backpressure), then keeps the archive. */
async function archive(file: string, data: Buffer): Promise<void> {
  const writer = await archiveWriter(file);
  if (!writer) throw new Error('no writer');
  await pipeline(Readable.from([data.subarray(0, data.length / 2), data.subarray(data.length / 2)]), writer.input);
  await writer.keep();
}

describe('base image archives', () => {
  it('keeps what went through it, compressed and checked by zstd, and no temporary file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kfarm-archive-'));
    const data = Buffer.concat([randomBytes(1 << 20), Buffer.alloc(4 << 20)]);
    await archive(join(dir, 'debian-bookworm-0123456789abcdef.tar.zst'), data);
    expect(await readdir(dir)).toEqual(['debian-bookworm-0123456789abcdef.tar.zst']);
    const back = await execa('zstd', ['-d', '-c', join(dir, 'debian-bookworm-0123456789abcdef.tar.zst')], {
      encoding: 'buffer',
    });
    expect(Buffer.compare(Buffer.from(back.stdout), data)).toBe(0);
  });

  it('without zstd the stream still flows to its end (the import is not held up) and nothing is kept', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kfarm-archive-'));
    process.env['PATH'] = '/nonexistent';
    await archive(join(dir, 'debian-bookworm-0123456789abcdef.tar.zst'), Buffer.alloc(8 << 20));
    expect(await readdir(dir)).toEqual([]);
  });

  it('an archive of a newer recipe replaces the older ones of its release, not those of other releases', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kfarm-archive-'));
    await archive(join(dir, 'debian-bookworm-0000000000000000.tar.zst'), Buffer.from('old'));
    await archive(join(dir, 'debian-trixie-0000000000000000.tar.zst'), Buffer.from('other'));
    await archive(join(dir, 'debian-bookworm-1111111111111111.tar.zst'), Buffer.from('new'));
    expect((await readdir(dir)).sort()).toEqual([
      'debian-bookworm-1111111111111111.tar.zst',
      'debian-trixie-0000000000000000.tar.zst',
    ]);
  });
});
