import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveTargets } from '../../src/plan/resolve.js';
import { cli, repoRoot, requireEngine, tempOut } from '../helpers/engine.js';

const kfarm = (args: string[]) => execa('node', [cli, ...args], { reject: false, env: { CI: 'true' }, cwd: repoRoot });
const reportOf = async (out: string) =>
  JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as { targets: { id: string; status: string }[] };

let supported: string[];

beforeAll(async () => {
  await requireEngine();
  supported = (await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') })).map((t) => t.id);
});

describe('kfarm plan and kfarm build --shard', () => {
  it('plans one shard per release of the default matrix, as a GitHub matrix', async () => {
    const run = await kfarm(['plan', '--shards', '5', '--json']);
    expect(run.exitCode, run.stderr).toBe(0);
    const plan = JSON.parse(run.stdout) as { include: { shard: string; targets: string[]; releases: string[] }[] };
    // Two targets (one per supported release): two shards, whatever was asked beyond that.
    expect(plan.include.map((e) => e.shard)).toEqual(['1/2', '2/2']);
    expect(plan.include.flatMap((e) => e.targets).sort()).toEqual([...supported].sort());
    for (const entry of plan.include) expect(entry.releases).toHaveLength(1);
    const table = await kfarm(['plan', '--shards', '2']);
    expect(table.stdout).toMatch(/^2 shard\(s\) for 2 target\(s\)/);
  });

  it('the shards build exactly their own targets, together the whole matrix', async () => {
    const plan = JSON.parse((await kfarm(['plan', '--shards', '2', '--json'])).stdout) as {
      include: { shard: string; targets: string[] }[];
    };
    const built: string[] = [];
    for (const entry of plan.include) {
      const out = await tempOut();
      const run = await kfarm(['build', 'examples/hello', '--shard', entry.shard, '--out', out]);
      expect(run.exitCode, run.stderr).toBe(0);
      const report = await reportOf(out);
      expect(report.targets.map((t) => t.id)).toEqual(entry.targets);
      expect(report.targets.every((t) => t.status === 'built')).toBe(true);
      built.push(...entry.targets);
    }
    expect(built.sort()).toEqual([...supported].sort());
  });

  it.each([
    [['plan', '--shards', '257'], /^kfarm: --shards 257: expected 1 … 256/],
    [['build', 'examples/hello', '--shard', '0/2'], /^kfarm: --shard "0\/2": expected i\/N/],
    [
      ['build', 'examples/hello', '--shard', '3/3'],
      /^kfarm: --shard 3\/3: no targets in this shard \(2 targets make 2 shards\)/,
    ],
  ])('%j is exit 2 with one line', async (args, message) => {
    const out = await tempOut();
    const run = await kfarm(args[0] === 'build' ? [...args, '--out', out] : args);
    expect(run.exitCode).toBe(2);
    expect(run.stderr.trim()).toMatch(message);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
  });
});
