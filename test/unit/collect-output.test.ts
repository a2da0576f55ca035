import { mkdtemp, readdir, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { collectOutput } from '../../src/farm/collect.js';
import { outputLimits } from '../../src/model/limits.js';
import { rawTar, type RawEntry } from '../helpers/tar-builder.js';

async function fresh() {
  const root = await mkdtemp(join(tmpdir(), 'kfarm-collect-'));
  const dest = join(root, 'stage');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dest);
  return { root, dest };
}

async function listTree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).sort();
}

const good: RawEntry[] = [
  { path: 'out/', type: 'Directory' },
  { path: 'out/make.log', data: 'make output\n' },
  { path: 'out/module/', type: 'Directory' },
  { path: 'out/module/hello.ko', data: Buffer.from('\x7fELF fake module') },
  { path: 'out/module/Module.symvers', data: '0x0\tsym\tpath\tEXPORT_SYMBOL\t\n' },
];

describe('collectOutput: build output is untrusted', () => {
  it('keeps the allow-listed files', async () => {
    const { dest } = await fresh();
    const collected = await collectOutput(rawTar(good), dest);
    expect(collected).toEqual({ modules: ['hello.ko'], symvers: true, log: true, logCutBytes: 0 });
    expect(await listTree(dest)).toEqual(['log', 'log/make.log', 'module', 'module/Module.symvers', 'module/hello.ko']);
    expect(await readFile(join(dest, 'log/make.log'), 'utf8')).toBe('make output\n');
    expect((await stat(join(dest, 'module/hello.ko'))).mode & 0o777).toBe(0o644);
  });

  const hostile: [string, RawEntry[], RegExp][] = [
    [
      'a symlink posing as a module',
      [{ path: 'out/module/evil.ko', type: 'SymbolicLink', linkpath: '/etc/passwd' }],
      /"out\/module\/evil\.ko" is a symbolic link, not a regular file/,
    ],
    [
      'a symlinked make.log',
      [{ path: 'out/make.log', type: 'SymbolicLink', linkpath: '../../../../etc/shadow' }],
      /is a symbolic link/,
    ],
    ['a hard link', [{ path: 'out/module/evil.ko', type: 'Link', linkpath: 'out/make.log' }], /is a hard link/],
    ['a FIFO', [{ path: 'out/module/pipe.ko', type: 'FIFO' }], /is a FIFO/],
    ['a device', [{ path: 'out/module/dev.ko', type: 'CharacterDevice' }], /is a character device/],
    ['a ../ path', [{ path: 'out/module/../../../../tmp/kfarm-escape.ko', data: 'x' }], /unexpected file/],
    ['an absolute path', [{ path: '/tmp/kfarm-escape-abs', data: 'x' }], /unexpected file/],
    ['an unexpected name', [{ path: 'out/run-me.sh', data: '#!/bin/sh' }], /unexpected file "out\/run-me\.sh"/],
    [
      'a module/ that is a symlink',
      [{ path: 'out/module', type: 'SymbolicLink', linkpath: '/etc' }],
      /"out\/module" is a symbolic link, not a directory/,
    ],
  ];
  for (const [name, entries, message] of hostile) {
    it(`rejects ${name}`, async () => {
      const { root, dest } = await fresh();
      await expect(collectOutput(rawTar([...good.slice(0, 3), ...entries]), dest)).rejects.toThrow(message);
      // Nothing landed outside the stage directory, and nothing rejected landed inside it.
      expect(await listTree(root)).not.toContain('kfarm-escape.ko');
      const inside = await listTree(dest);
      expect(inside.filter((p) => !['log', 'log/make.log', 'module'].includes(p))).toEqual([]);
    });
  }

  it('rejects an oversized module without reading it', async () => {
    const { dest } = await fresh();
    const twoGiB = 2 * 1024 ** 3;
    const archive = rawTar(
      [
        { path: 'out/', type: 'Directory' },
        { path: 'out/module/', type: 'Directory' },
        { path: 'out/module/huge.ko', size: twoGiB },
      ],
      {
        trailingBytes: twoGiB,
      },
    );
    let read = 0;
    archive.on('data', (chunk: Buffer) => (read += chunk.length));
    await expect(collectOutput(archive, dest)).rejects.toThrow(
      /"out\/module\/huge\.ko" is 2147483648 bytes, over the \d+-byte limit/,
    );
    expect(read).toBeLessThan(64 * 1024 * 1024);
    expect(await listTree(dest)).toEqual([]);
  });

  it('keeps the head and tail of a make.log over the limit (but under four times it), with a marker', async () => {
    const { dest } = await fresh();
    const saved = outputLimits.logBytes;
    outputLimits.logBytes = 1000;
    try {
      const log = `${'h'.repeat(1000)}${'m'.repeat(1000)}${'t'.repeat(1000)}`;
      const collected = await collectOutput(
        rawTar([
          { path: 'out/', type: 'Directory' },
          { path: 'out/make.log', data: log },
        ]),
        dest,
      );
      const kept = await readFile(join(dest, 'log/make.log'), 'utf8');
      expect(kept.length).toBeLessThanOrEqual(1000);
      expect(kept).toMatch(
        /^h{372}\n\[kfarm: make\.log is 3000 bytes; 2256 bytes cut here, its head and tail kept\]\nt{372}$/,
      );
      expect(collected.logCutBytes).toBe(2256);
      await expect(
        collectOutput(
          rawTar([
            { path: 'out/', type: 'Directory' },
            { path: 'out/make.log', data: 'y'.repeat(4001) },
          ]),
          (await fresh()).dest,
        ),
      ).rejects.toThrow(/"out\/make\.log" is 4001 bytes, over the 4000-byte limit/);
    } finally {
      outputLimits.logBytes = saved;
    }
  });

  it('rejects an archive with too many entries', async () => {
    const { dest } = await fresh();
    const many = Array.from({ length: outputLimits.entries + 1 }, () => ({
      path: 'out/',
      type: 'Directory' as const,
    }));
    await expect(collectOutput(rawTar(many), dest)).rejects.toThrow(/more than \d+ entries/);
  });
});
