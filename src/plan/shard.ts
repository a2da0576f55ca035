import { KfarmError } from '../model/errors.js';
import type { KernelTarget } from '../model/target.js';
import { compareDebianVersions } from '../util/debian-version.js';

/** GitHub Actions runs at most 256 jobs from one matrix. */
export const MAX_SHARDS = 256;

/**
 * Estimated seconds, from bench/cold on a 2-core runner: a release's builder image (its base bootstrapped, or
 * restored from a cache dir) costs a shard about as much as six kernels (headers volumes and a hello-sized build).
 */
const RELEASE_COST = 30;
const TARGET_COST = 5;

export interface ShardSpec {
  /** 1-based. */
  index: number;
  count: number;
}

export interface Shard extends ShardSpec {
  targets: KernelTarget[];
  /** `<distro>/<release>` of every image the shard prepares, sorted. */
  releases: string[];
  /** Estimated seconds (RELEASE_COST per release, TARGET_COST per target). */
  cost: number;
}

/** `--shard i/N` → { index: i, count: N }: 1 ≤ i ≤ N ≤ 256. */
export function parseShard(text: string): ShardSpec {
  const match = /^([0-9]+)\/([0-9]+)$/.exec(text.trim());
  const index = Number(match?.[1]);
  const count = Number(match?.[2]);
  if (!match || index < 1 || index > count || count > MAX_SHARDS) {
    throw new KfarmError('KFARM_USAGE', `--shard ${JSON.stringify(text)}: expected i/N with 1 ≤ i ≤ N ≤ ${MAX_SHARDS}`);
  }
  return { index, count };
}

/** `--shards N`: 1 … 256. */
export function checkShardCount(count: number): number {
  if (!Number.isInteger(count) || count < 1 || count > MAX_SHARDS) {
    throw new KfarmError('KFARM_USAGE', `--shards ${count}: expected 1 … ${MAX_SHARDS} (GitHub's jobs per matrix)`);
  }
  return count;
}

/**
 * Splits targets into at most `count` shards (fewer when more would not lower the most expensive one), the same
 * way for the same targets whatever order they come in. The targets are lined up by release, then kernel
 * version, and cut into consecutive runs so that the most expensive shard costs as little as it can: a release
 * costs its image once per shard it is in, so releases stay whole unless cutting one evens out the shards by
 * more than the image costs, and a cut release's shards hold neighbouring kernel versions.
 */
export function planShards(targets: readonly KernelTarget[], count: number): Shard[] {
  checkShardCount(count);
  const line = releaseGroups(targets).flat();
  if (line.length === 0) return [];
  // The smallest cap on a shard's cost that the line can be cut into `count` runs under (binary search).
  let low = RELEASE_COST + TARGET_COST;
  let high = runCost(line);
  while (low < high) {
    const cap = Math.floor((low + high) / 2);
    if (cutUnder(line, cap).length <= count) high = cap;
    else low = cap + 1;
  }
  const runs = cutUnder(line, low);
  return runs.map((run, i) => shardOf(i + 1, runs.length, run, targets));
}

/** The targets of shard `spec` of `targets`, in their given order: what `kfarm build --shard i/N` builds. */
export function shardTargets(targets: readonly KernelTarget[], spec: ShardSpec): KernelTarget[] {
  return planShards(targets, spec.count).find((s) => s.index === spec.index)?.targets ?? [];
}

function shardOf(index: number, count: number, run: KernelTarget[], all: readonly KernelTarget[]): Shard {
  const ids = new Set(run.map((t) => t.id));
  const releases = [...new Set(run.map(releaseOf))].sort();
  return { index, count, targets: all.filter((t) => ids.has(t.id)), releases, cost: runCost(run) };
}

const releaseOf = (t: KernelTarget) => `${t.distro}/${t.release}`;
const runCost = (run: readonly KernelTarget[]) =>
  RELEASE_COST * new Set(run.map(releaseOf)).size + TARGET_COST * run.length;

/** The line cut greedily: each run as long as it stays within `cap` (a run of one target always does). */
function cutUnder(line: readonly KernelTarget[], cap: number): KernelTarget[][] {
  const runs: KernelTarget[][] = [];
  let run: KernelTarget[] = [];
  let cost = 0;
  for (const t of line) {
    const continues = run.length > 0 && releaseOf(run.at(-1)!) === releaseOf(t);
    const more = TARGET_COST + (continues ? 0 : RELEASE_COST);
    if (run.length > 0 && cost + more > cap) {
      runs.push(run);
      run = [t];
      cost = TARGET_COST + RELEASE_COST;
    } else {
      run.push(t);
      cost += more;
    }
  }
  runs.push(run);
  return runs;
}

/** Targets by release, each group ordered by kernel version (then id), the groups by name. */
function releaseGroups(targets: readonly KernelTarget[]): KernelTarget[][] {
  const byRelease = new Map<string, KernelTarget[]>();
  for (const t of targets) byRelease.set(releaseOf(t), [...(byRelease.get(releaseOf(t)) ?? []), t]);
  const byVersion = (a: KernelTarget, b: KernelTarget) =>
    compareDebianVersions(a.headersVersion, b.headersVersion) || a.id.localeCompare(b.id);
  return [...byRelease.keys()].sort().map((name) => byRelease.get(name)!.sort(byVersion));
}
