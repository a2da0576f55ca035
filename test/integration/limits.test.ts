import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TargetResult } from '../../src/model/result.js';
import { resolveTargets } from '../../src/plan/resolve.js';
import { cli, fixture, repoRoot, requireEngine, tempOut } from '../helpers/engine.js';

let bookworm: string;

beforeAll(async () => {
  await requireEngine();
  const targets = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  bookworm = targets.find((t) => t.release === 'bookworm')?.id as string;
});

const kfarm = (args: string[]) => execa('node', [cli, ...args], { reject: false, env: { CI: 'true' }, cwd: repoRoot });

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
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
      targets: TargetResult[];
      counts: Record<string, number>;
    };
    const [target] = report.targets;
    expect(target?.status).toBe('oom');
    expect(target?.error).toBe('the build ran out of memory (limit 256 MiB; raise it with --memory)');
    expect(report.counts['oom']).toBe(1);
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
});
