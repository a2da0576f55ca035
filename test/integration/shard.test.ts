import { createHash } from 'node:crypto';
import { cp, readFile, readdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveTargets } from '../../src/plan/resolve.js';
import { cli, repoRoot, requireEngine, tempOut } from '../helpers/engine.js';

const kfarm = (args: string[]) => execa('node', [cli, ...args], { reject: false, env: { CI: 'true' }, cwd: repoRoot });
const reportOf = async (out: string) =>
  JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
    counts: Record<string, number>;
    targets: { id: string; status: string; artifacts: string[] }[];
  };

let supported: string[];
/** The shards' outputs, built by the second test and merged by the later ones. */
const shardOuts: string[] = [];

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
      shardOuts.push(out);
      const run = await kfarm(['build', 'examples/hello', '--shard', entry.shard, '--out', out, '--no-cache']);
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

  it('kfarm merge of the shards equals one unsharded run: targets, statuses, files and .ko bytes', async () => {
    const whole = await tempOut();
    expect((await kfarm(['build', 'examples/hello', '--out', whole, '--no-cache'])).exitCode).toBe(0);
    const merged = join(await tempOut(), 'merged');
    const run = await kfarm(['merge', ...shardOuts, '--out', merged]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/2 output\(s\) merged, 2 target\(s\): 2 built/);
    const view = (r: Awaited<ReturnType<typeof reportOf>>) =>
      r.targets
        .map((t) => ({ id: t.id, status: t.status, artifacts: t.artifacts }))
        .sort((a, b) => a.id.localeCompare(b.id));
    const [a, b] = [await reportOf(merged), await reportOf(whole)];
    expect(view(a)).toEqual(view(b));
    expect(a.counts).toEqual(b.counts);
    expect(await filesOf(merged)).toEqual(await filesOf(whole));
    for (const ko of (await filesOf(whole)).filter((f) => f.endsWith('.ko')))
      expect(await sha256(join(merged, ko)), ko).toBe(await sha256(join(whole, ko)));
    expect(await readFile(join(merged, 'junit.xml'), 'utf8')).toMatch(/tests="2"/);
  });

  it('kfarm merge refuses outputs that disagree, naming both, and writes nothing', async () => {
    const [first] = shardOuts as [string];
    const copy = await tempOut();
    await cp(first, copy, { recursive: true });
    const ko = (await filesOf(copy)).find((f) => f.endsWith('.ko'))!;
    await writeFile(join(copy, ko), 'not the same module');
    const out = join(await tempOut(), 'merged');
    const run = await kfarm(['merge', first, copy, '--out', out]);
    expect(run.exitCode).toBe(2);
    expect(run.stderr.trim()).toBe(
      `kfarm: ${join(first, ko)} and ${join(copy, ko)} differ: the outputs disagree about ${ko}`,
    );
    expect(await readdir(join(out, '..'))).toEqual([]);

    const report = JSON.parse(await readFile(join(copy, 'report.json'), 'utf8')) as { targets: { status: string }[] };
    report.targets[0]!.status = 'failed';
    await writeFile(join(copy, 'report.json'), JSON.stringify(report));
    const conflict = await kfarm(['merge', first, copy, '--out', out]);
    expect(conflict.exitCode).toBe(2);
    expect(conflict.stderr).toMatch(/report\.json says built, .*report\.json says failed/);

    const busy = await kfarm(['merge', first, '--out', copy]);
    expect(busy.exitCode).toBe(2);
    expect(busy.stderr).toMatch(/--out .*: exists and is not empty/);
  });
});

/** Every file and link under `dir`, relative, sorted (the regenerated reports included). */
async function filesOf(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}
