import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeCpio, type CpioEntry } from '../../src/verify/cpio.js';
import { initScript } from '../../src/verify/init-script.js';
import { shellQuote } from '../../src/util/shell.js';
import { buildInitramfs, isStaticElf } from '../../src/verify/initramfs.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kfarm-cpio-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function saved(bytes: Buffer, name = 'a.cpio'): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

const sample: CpioEntry[] = [
  { type: 'dir', path: 'bin' },
  { type: 'file', path: 'bin/tool', data: Buffer.from('#!/bin/sh\necho hi\n'), mode: 0o755 },
  { type: 'symlink', path: 'bin/sh', target: 'tool' },
  { type: 'dir', path: 'dev' },
  { type: 'char', path: 'dev/console', major: 5, minor: 1 },
  { type: 'file', path: 'odd', data: Buffer.from('abc') },
  { type: 'file', path: 'empty', data: Buffer.alloc(0) },
];

describe('writeCpio (newc)', () => {
  it('is read back by GNU cpio with types, modes and device numbers intact', async () => {
    const archive = await saved(writeCpio(sample));
    const { stdout } = await execa('cpio', ['-itv', '--quiet', '-F', archive]);
    const lines = stdout.split('\n');
    expect(lines.map((l) => l.replace(/^.*? 19(69|70) /, ''))).toEqual([
      'bin',
      'bin/tool',
      'bin/sh -> tool',
      'dev',
      'dev/console',
      'odd',
      'empty',
    ]);
    expect(lines[0]).toMatch(/^drwxr-xr-x /);
    expect(lines[1]).toMatch(/^-rwxr-xr-x .* 18 /);
    expect(lines[2]).toMatch(/^lrwxrwxrwx /);
    expect(lines[4]).toMatch(/^crw------- .* 5,\s+1 /);
    expect(lines[5]).toMatch(/^-rw-r--r-- .* 3 /);
  });

  it('is read back by bsdtar (libarchive), contents byte for byte', async () => {
    const archive = await saved(writeCpio(sample), 'b.cpio');
    const list = await execa('bsdtar', ['-tf', archive]);
    expect(list.stdout.split('\n')).toEqual(['bin', 'bin/tool', 'bin/sh', 'dev', 'dev/console', 'odd', 'empty']);
    const tool = await execa('bsdtar', ['-xOf', archive, 'bin/tool']);
    expect(tool.stdout).toBe('#!/bin/sh\necho hi');
    expect((await execa('bsdtar', ['-xOf', archive, 'odd'])).stdout).toBe('abc');
  });

  it('aligns every header and data block to 4 bytes and ends with the trailer', () => {
    const bytes = writeCpio(sample);
    expect(bytes.length % 4).toBe(0);
    let at = 0;
    const names: string[] = [];
    while (at < bytes.length) {
      expect(bytes.toString('latin1', at, at + 6)).toBe('070701');
      const field = (i: number) => parseInt(bytes.toString('latin1', at + 6 + i * 8, at + 14 + i * 8), 16);
      const size = field(6);
      const nameSize = field(11);
      names.push(bytes.toString('latin1', at + 110, at + 110 + nameSize - 1));
      at += Math.ceil((110 + nameSize) / 4) * 4;
      at += Math.ceil(size / 4) * 4;
    }
    expect(at).toBe(bytes.length);
    expect(names.at(-1)).toBe('TRAILER!!!');
  });

  it('is deterministic and refuses unsafe or duplicate paths', () => {
    expect(writeCpio(sample).equals(writeCpio(sample))).toBe(true);
    for (const path of ['/abs', '../up', 'a/../b', '', 'a//b', 'a/./b']) {
      expect(() => writeCpio([{ type: 'dir', path }])).toThrow('cpio: bad path');
    }
    expect(() =>
      writeCpio([
        { type: 'dir', path: 'a' },
        { type: 'dir', path: 'a' },
      ]),
    ).toThrow('cpio: duplicate entry a');
  });
});

describe('initramfs', () => {
  it('packs busybox, /init, /dev/console and the modules under their modinfo names', async () => {
    const gz = await buildInitramfs({
      modules: [
        { name: 'mc', source: 'kernel', elf: Buffer.from('mc-elf'), args: [] },
        { name: 'kf_beta', source: 'package', elf: Buffer.from('beta-elf'), args: ['level=3', 'whom="a b"'] },
      ],
      missing: [['kf_beta', 'nowhere']],
    });
    const archive = await saved(gunzipSync(gz), 'initrd.cpio');
    const { stdout } = await execa('cpio', ['-itv', '--quiet', '-F', archive]);
    const names = stdout.split('\n').map((l) => l.replace(/^.*? 19(69|70) /, ''));
    expect(names).toEqual(
      expect.arrayContaining([
        'init',
        'bin/busybox',
        'bin/sh -> busybox',
        'dev/console',
        'dev/null',
        'lib/modules/kfarm/kernel/mc.ko',
        'lib/modules/kfarm/package/kf_beta.ko',
      ]),
    );
    expect(stdout).toMatch(/crw------- .* 5,\s+1 .* dev\/console/);
    expect(stdout).toMatch(/-rwxr-xr-x .* init/);
    const busybox = (await execa('bsdtar', ['-xOf', archive, 'bin/busybox'], { encoding: 'buffer' })).stdout;
    expect(Buffer.from(busybox).equals(await readFile('/bin/busybox'))).toBe(true);
    const init = (await execa('bsdtar', ['-xOf', archive, 'init'])).stdout;
    expect(init).toContain(
      'load mc kernel /lib/modules/kfarm/kernel/mc.ko || return 1\n' +
        `  load kf_beta package /lib/modules/kfarm/package/kf_beta.ko level=3 'whom="a b"' || return 1`,
    );
    expect(init).toContain('say "KFARM: plan mc kf_beta"');
    expect(init).toContain('say "KFARM: missing-dependency kf_beta nowhere"');
  });

  it('writes an /init that busybox sh parses', async () => {
    const script = initScript({
      modules: [
        { name: 'hello', source: 'package', path: '/lib/modules/kfarm/package/hello.ko', args: [`it's`, 'x=1'] },
      ],
    });
    const path = join(dir, 'init.sh');
    await writeFile(path, script);
    await execa('/bin/busybox', ['sh', '-n', path]);
    expect(script.startsWith('#!/bin/busybox sh\n')).toBe(true);
    expect(script).toContain(`'it'\\''s' x=1`);
    expect(() => initScript({ modules: [{ name: 'bad name', source: 'package', path: '/x', args: [] }] })).toThrow(
      'bad module name',
    );
  });

  it('quotes shell words only when needed', () => {
    expect(shellQuote('a=b')).toBe('a=b');
    expect(shellQuote('a b')).toBe(`'a b'`);
    expect(shellQuote(`$(x)'`)).toBe(`'$(x)'\\'''`);
  });

  it('accepts only a statically linked busybox', async () => {
    expect(isStaticElf(await readFile('/bin/busybox'))).toBe(true);
    expect(isStaticElf(await readFile('/bin/ls'))).toBe(false);
    expect(isStaticElf(Buffer.from('#!/bin/sh\n'))).toBe(false);
    await expect(buildInitramfs({ modules: [], busybox: '/bin/ls' })).rejects.toThrow(
      '/bin/ls: not a statically linked busybox',
    );
    await expect(buildInitramfs({ modules: [], busybox: join(dir, 'none') })).rejects.toMatchObject({
      code: 'KFARM_USAGE',
    });
  });
});
