import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TargetResult } from '../../src/model/result.js';
import { resolveTargets } from '../../src/plan/resolve.js';
import { example, fixture, repoRoot, requireEngine, runKfarm, tempOut } from '../helpers/engine.js';

let bookworm: string;

beforeAll(async () => {
  await requireEngine();
  const targets = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  bookworm = targets.find((t) => t.release === 'bookworm')?.id as string;
});

const kfarm = (args: string[]) => runKfarm(args);

async function report(out: string): Promise<{ targets: TargetResult[]; counts: Record<string, number> }> {
  return JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
    targets: TargetResult[];
    counts: Record<string, number>;
  };
}

/** examples/hello with a PRE_BUILD script (`body`) and, optionally, its own MAKE command. */
async function helloWith(body: string, make?: string): Promise<string> {
  const src = join(await tempOut(), 'src');
  await cp(example('hello'), src, { recursive: true });
  await writeFile(join(src, 'pre.sh'), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  const extra = ['PRE_BUILD="pre.sh"', ...(make ? [`MAKE[0]="${make}"`, 'STRIP[0]="no"'] : [])];
  await writeFile(join(src, 'dkms.conf'), `${await readFile(join(src, 'dkms.conf'), 'utf8')}\n${extra.join('\n')}\n`);
  return src;
}

async function hostFreeBytes(): Promise<number> {
  const { stdout } = await execa('df', ['-B1', '--output=avail', '/']);
  return Number(stdout.split('\n')[1]);
}

describe('resource limits of a build', () => {
  it('--memory: a build the kernel OOM-kills is `oom`, exit 1, with the limit and how to raise it', async () => {
    const out = await tempOut();
    // The fixture's PRE_BUILD holds 1 GiB in memory.
    const run = await kfarm([
      'build',
      fixture('oom'),
      '--target',
      bookworm,
      '--memory',
      '256m',
      '--out',
      out,
      '--no-cache',
    ]);
    expect(run.exitCode, run.stderr).toBe(1);
    const { targets, counts } = await report(out);
    expect(targets[0]?.status).toBe('oom');
    expect(targets[0]?.error).toBe('the build ran out of memory (limit 256 MiB; raise it with --memory)');
    expect(counts['oom']).toBe(1);
    expect(run.stdout).toMatch(/oom after .*ran out of memory/);
  });

  it('the same build with enough memory gets past its PRE_BUILD and builds', async () => {
    const out = await tempOut();
    const run = await kfarm([
      'build',
      fixture('oom'),
      '--target',
      bookworm,
      '--memory',
      '2g',
      '--out',
      out,
      '--no-cache',
    ]);
    expect(run.exitCode, run.stderr + run.stdout).toBe(0);
  });

  it('files a build writes fill memory: `oom` too (the memory check itself cannot run any more)', async () => {
    const src = await helloWith('head -c 900M /dev/zero > /var/lib/dkms/fill');
    const out = await tempOut();
    const run = await kfarm([
      'build',
      src,
      '--target',
      bookworm,
      '--memory',
      '256m',
      '--disk',
      '1g',
      '--out',
      out,
      '--no-cache',
    ]);
    expect(run.exitCode, run.stderr).toBe(1);
    expect((await report(out)).targets[0]?.status).toBe('oom');
  });

  it('--disk: a 20 GB write is stopped at the limit, the host disk untouched, and the failure says so', async () => {
    const free = await hostFreeBytes();
    const src = await helloWith('fallocate -l 20G big; head -c 20G /dev/zero > big');
    const out = await tempOut();
    const run = await kfarm(['build', src, '--target', bookworm, '--disk', '512m', '--out', out, '--no-cache']);
    expect(run.exitCode, run.stderr).toBe(1);
    const [target] = (await report(out)).targets;
    expect(target?.status).toBe('failed');
    expect(target?.error).toMatch(
      /^the build filled its disk limit \(512 MiB at \/var\/lib\/dkms; raise it with --disk\)$/,
    );
    expect(Math.abs((await hostFreeBytes()) - free)).toBeLessThan(512 * 1024 ** 2);
  });

  it('a .ko that is not a kernel module fails the target and is not kept', async () => {
    const src = await helloWith('true', "sh -c 'echo not-a-module > hello.ko'");
    const out = await tempOut();
    const run = await kfarm(['build', src, '--target', bookworm, '--out', out, '--no-cache']);
    expect(run.exitCode, run.stderr).toBe(1);
    const [target] = (await report(out)).targets;
    expect(target?.status).toBe('failed');
    expect(target?.error).toBe('not a kernel module: module/hello.ko is not an ELF file');
    expect(target?.artifacts).toEqual([]);
  });
});
