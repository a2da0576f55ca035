import { describe, expect, it } from 'vitest';
import type { KernelTarget } from '../../src/model/target.js';
import { MAX_SHARDS, parseShard, planShards, shardTargets } from '../../src/plan/shard.js';

function target(release: string, abi: number): KernelTarget {
  const kernel = `6.1.0-${abi}-amd64`;
  return {
    id: `debian/${release}/${kernel}`,
    distro: 'debian',
    release,
    kernel,
    flavour: 'amd64',
    arch: 'x86_64',
    headersPackage: `linux-headers-${kernel}`,
    headersVersion: `6.1.${abi}-1`,
    commonPackage: `linux-headers-6.1.0-${abi}-common`,
    suite: release,
    backports: false,
  };
}

const many = (release: string, n: number) => Array.from({ length: n }, (_, i) => target(release, 10 + i));
const ids = (targets: KernelTarget[]) => targets.map((t) => t.id);

describe('parseShard', () => {
  it('reads i/N', () => {
    expect(parseShard('2/3')).toEqual({ index: 2, count: 3 });
  });

  it.each(['0/3', '4/3', '1/257', '1', 'a/b', '1/3/4'])('rejects %s naming the flag', (text) => {
    expect(() => parseShard(text)).toThrow(/^--shard .*expected i\/N/);
  });
});

describe('planShards', () => {
  it('covers every target exactly once', () => {
    const all = [...many('bookworm', 7), ...many('trixie', 5), ...many('sid', 2)];
    for (const count of [1, 2, 3, 5, 8, 14, 20]) {
      const shards = planShards(all, count);
      expect(shards.length).toBe(Math.min(count, all.length));
      expect(shards.flatMap((s) => ids(s.targets)).sort()).toEqual(ids(all).sort());
    }
  });

  it('keeps a release in one shard while there are no more shards than releases', () => {
    const all = [...many('bookworm', 7), ...many('trixie', 5), ...many('sid', 2)];
    const shards = planShards(all, 3);
    expect(shards.map((s) => s.releases)).toEqual([['debian/bookworm'], ['debian/sid'], ['debian/trixie']]);
    // Two shards: the biggest release alone (30+35), the two others together (30+10 + 30+25).
    expect(planShards(all, 2).map((s) => s.releases.length)).toEqual([1, 2]);
  });

  it('cuts the most expensive release first into runs of neighbouring kernels', () => {
    const all = [...many('bookworm', 12), ...many('trixie', 2)];
    const shards = planShards(all, 3);
    const bookworm = shards.filter((s) => s.releases.includes('debian/bookworm'));
    expect(bookworm).toHaveLength(2);
    expect(bookworm.map((s) => s.targets.length)).toEqual([6, 6]);
    const abis = bookworm.map((s) => s.targets.map((t) => Number(/-(\d+)-amd64$/.exec(t.kernel)![1])));
    // Each shard's kernels are consecutive versions (no interleaving across the two bookworm shards).
    for (const run of abis) expect(Math.max(...run) - Math.min(...run)).toBe(run.length - 1);
  });

  it('balances by estimated cost, not by count of targets', () => {
    const shards = planShards([...many('bookworm', 40), ...many('trixie', 40), ...many('sid', 40)], 4);
    const costs = shards.map((s) => s.cost);
    expect(Math.max(...costs) - Math.min(...costs)).toBeLessThanOrEqual(35);
  });

  it('is the same whatever order the targets come in, and keeps their order inside a shard', () => {
    const all = [...many('bookworm', 9), ...many('trixie', 4)];
    const reversed = [...all].reverse();
    const a = planShards(all, 4).map((s) => ids(s.targets).sort());
    const b = planShards(reversed, 4).map((s) => ids(s.targets).sort());
    expect(b).toEqual(a);
    const first = planShards(reversed, 4)[0]!.targets;
    expect(ids(first)).toEqual(ids(reversed).filter((id) => ids(first).includes(id)));
  });

  it('never makes more than 256 shards, more shards than targets, or shards that lower no cost', () => {
    expect(planShards(many('bookworm', 3), 10)).toHaveLength(3);
    const releases = (n: number) => Array.from({ length: n }, (_, i) => target(`r${String(i).padStart(3, '0')}`, 10));
    expect(planShards(releases(256), MAX_SHARDS)).toHaveLength(MAX_SHARDS);
    // 300 one-kernel releases: 256 shards would still hold two releases in some, so 150 of two each.
    expect(planShards(releases(300), MAX_SHARDS).map((s) => s.cost)).toEqual(Array(150).fill(70));
    // 400 kernels of two releases: one shard per kernel costs 35 each, one per two kernels 40: 200 shards.
    expect(planShards([...many('bookworm', 200), ...many('trixie', 200)], MAX_SHARDS)).toHaveLength(200);
    expect(() => planShards(many('bookworm', 3), 257)).toThrow(/--shards 257/);
  });
});

describe('shardTargets', () => {
  it('is what the plan put in that shard, and nothing for a shard past the targets', () => {
    const all = [...many('bookworm', 5), ...many('trixie', 3)];
    const plan = planShards(all, 3);
    for (const shard of plan) expect(shardTargets(all, shard)).toEqual(shard.targets);
    expect(shardTargets(many('bookworm', 2), { index: 3, count: 3 })).toEqual([]);
  });
});
