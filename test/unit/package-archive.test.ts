import { createHash } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import { Parser, type ReadEntry } from 'tar';
import { describe, expect, it } from 'vitest';
import {
  arArchive,
  comparePaths,
  crc32,
  gzip,
  tarArchive,
  withParents,
  type TarEntry,
} from '../../src/package/archive.js';

const epoch = 1700000000;

async function listWithGnuTar(archive: Buffer, compressed = false): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-tar-'));
  const file = join(dir, compressed ? 'a.tar.gz' : 'a.tar');
  await writeFile(file, archive);
  const { stdout } = await execa('tar', ['--numeric-owner', '--full-time', '-tv', compressed ? '-zf' : '-f', file], {
    env: { TZ: 'UTC' },
  });
  return stdout.split('\n');
}

async function parseWithNodeTar(archive: Buffer): Promise<
  {
    path: string;
    type: string;
    mode: number;
    size: number;
    mtime: number;
    uid: number;
    uname: string;
    data: Buffer;
    linkpath: string;
  }[]
> {
  const entries: {
    path: string;
    type: string;
    mode: number;
    size: number;
    mtime: number;
    uid: number;
    uname: string;
    data: Buffer;
    linkpath: string;
  }[] = [];
  const parser = new Parser({ strict: true });
  const warnings: string[] = [];
  parser.on('warn', (code: string, message: string) => warnings.push(`${code} ${message}`));
  parser.on('entry', (entry: ReadEntry) => {
    const chunks: Buffer[] = [];
    entry.on('data', (c: Buffer) => chunks.push(c));
    entry.on('end', () =>
      entries.push({
        path: entry.path,
        type: entry.type,
        mode: entry.mode ?? -1,
        size: entry.size ?? -1,
        mtime: Math.floor((entry.mtime?.getTime() ?? 0) / 1000),
        uid: entry.uid ?? -1,
        uname: entry.uname ?? '',
        data: Buffer.concat(chunks),
        linkpath: entry.linkpath ?? '',
      }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
    parser.end(archive);
  });
  expect(warnings).toEqual([]);
  return entries;
}

describe('reproducible tar writer', () => {
  const files: TarEntry[] = [
    { path: 'b/z.ko', type: 'file', mode: 0o644, data: Buffer.from('zzz') },
    { path: 'a-b/file', type: 'file', mode: 0o755, data: Buffer.from('#!/bin/sh\n') },
    { path: 'a/y', type: 'file', mode: 0o644, data: Buffer.alloc(1000, 7) },
    { path: 'a/link', type: 'symlink', mode: 0o777, target: 'y' },
  ];

  it('sorts by path components, adds parents, stamps root:root and one mtime; GNU tar and node-tar agree', async () => {
    const archive = tarArchive(withParents(files), epoch);
    expect(archive.length % 10240).toBe(0);
    const listing = await listWithGnuTar(archive);
    expect(listing.map((l) => /\d\d:\d\d:\d\d (.*)$/.exec(l)?.[1])).toEqual([
      './',
      './a/',
      './a/link -> y',
      './a/y',
      './a-b/',
      './a-b/file',
      './b/',
      './b/z.ko',
    ]);
    for (const line of listing) expect(line).toMatch(/^\S+ 0\/0 +\d+ 2023-11-14 22:13:20 /);
    const parsed = await parseWithNodeTar(archive);
    expect(parsed.find((e) => e.path === './a-b/file')).toMatchObject({
      mode: 0o755,
      type: 'File',
      uid: 0,
      uname: 'root',
      mtime: epoch,
    });
    expect(parsed.find((e) => e.path === './a/')).toMatchObject({ mode: 0o755, type: 'Directory' });
    expect(parsed.find((e) => e.path === './a/link')).toMatchObject({ type: 'SymbolicLink', linkpath: 'y' });
    expect(parsed.find((e) => e.path === './a/y')?.data).toEqual(Buffer.alloc(1000, 7));
  });

  it('gives the same bytes whatever the input order', () => {
    const a = tarArchive(withParents(files), epoch);
    const b = tarArchive(withParents([...files].reverse()), epoch);
    expect(createHash('sha256').update(a).digest('hex')).toBe(createHash('sha256').update(b).digest('hex'));
    expect(tarArchive(withParents(files), epoch + 1).equals(a)).toBe(false);
  });

  it('long paths: the ustar prefix field, then GNU long names; both read back whole', async () => {
    const mid = `${'d'.repeat(90)}/${'e'.repeat(90)}/file.c`;
    const huge = `${'x'.repeat(120)}/${'y'.repeat(150)}.c`;
    const archive = tarArchive(
      withParents([
        { path: mid, type: 'file', mode: 0o644, data: Buffer.from('m') },
        { path: huge, type: 'file', mode: 0o644, data: Buffer.from('h') },
      ]),
      epoch,
    );
    const parsed = await parseWithNodeTar(archive);
    expect(parsed.map((e) => e.path)).toContain(`./${mid}`);
    expect(parsed.map((e) => e.path)).toContain(`./${huge}`);
    const gnu = await listWithGnuTar(archive);
    expect(gnu.some((l) => l.endsWith(`./${huge}`))).toBe(true);
  });

  it('refuses paths that could leave the extraction directory, and duplicates', () => {
    for (const path of ['../x', 'a/../../x', '/etc/passwd', 'a//b', './a']) {
      expect(() => tarArchive([{ path, type: 'file', mode: 0o644 }], epoch), path).toThrow(/bad archive member path/);
    }
    expect(() =>
      tarArchive(
        [
          { path: 'a', type: 'file', mode: 0o644 },
          { path: 'a', type: 'file', mode: 0o644 },
        ],
        epoch,
      ),
    ).toThrow(/duplicate/);
  });

  it('comparePaths puts a directory before its contents', () => {
    expect(['a/b', 'a-b', 'a', ''].sort(comparePaths)).toEqual(['', 'a', 'a/b', 'a-b']);
  });
});

describe('gzip with a fixed header', () => {
  it('is gzip -9n framing (no name, mtime 0, XFL 2, OS 3) and decompresses to the input', async () => {
    const data = Buffer.from('hello '.repeat(1000));
    const z = gzip(data);
    expect([...z.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
    expect(gunzipSync(z).equals(data)).toBe(true);
    const dir = await mkdtemp(join(tmpdir(), 'kfarm-gz-'));
    await writeFile(join(dir, 'x.gz'), z);
    const { stdout } = await execa('gzip', ['-lvN', join(dir, 'x.gz')]);
    expect(stdout).toMatch(/defla [0-9a-f]{8}/);
    await execa('gzip', ['-t', join(dir, 'x.gz')]);
  });

  it('crc32 matches zlib', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    const data = Buffer.from('kfarm');
    const trailer = gzip(data).subarray(-8);
    expect(trailer.readUInt32LE(0)).toBe(crc32(data));
  });
});

describe('ar writer', () => {
  it('writes what binutils ar reads back: names, sizes, odd-size padding, owner 0/0, mode 644', async () => {
    const archive = arArchive(
      [
        { name: 'debian-binary', data: Buffer.from('2.0\n') },
        { name: 'odd', data: Buffer.from('abc') },
        { name: 'data.tar.gz', data: Buffer.alloc(10, 1) },
      ],
      epoch,
    );
    const dir = await mkdtemp(join(tmpdir(), 'kfarm-ar-'));
    await writeFile(join(dir, 'x.a'), archive);
    const { stdout } = await execa('ar', ['tvO', join(dir, 'x.a')], { env: { TZ: 'UTC' } }).catch(() =>
      execa('ar', ['tv', join(dir, 'x.a')], { env: { TZ: 'UTC' } }),
    );
    const lines = stdout.split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^rw-r--r-- 0\/0 +4 Nov 14 22:13 2023 debian-binary/);
    expect(lines[2]).toMatch(/data\.tar\.gz/);
    await execa('ar', ['x', join(dir, 'x.a'), 'odd'], { cwd: dir });
    expect(await readFile(join(dir, 'odd'), 'utf8')).toBe('abc');
  });
});
