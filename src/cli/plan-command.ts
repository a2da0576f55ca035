import { Command } from 'commander';
import { resolvePlan } from '../plan/resolve.js';
import { checkShardCount, planShards, type Shard } from '../plan/shard.js';
import { matrixOfTargets } from './build-command.js';
import { collect, formatTable, positiveInt } from './options.js';

interface PlanOpts {
  target: string[];
  matrix?: string;
  shards: number;
  refresh?: boolean;
  json?: boolean;
}

export function planCommand(signal: AbortSignal): Command {
  return new Command('plan')
    .description(
      'split the target kernels into shards for parallel jobs (a GitHub Actions matrix); `kfarm build --shard i/N` builds one',
    )
    .option('-t, --target <id>', 'target kernel <distro>/<release>/<kernel-release>, repeatable', collect, [])
    .option(
      '-m, --matrix <file>',
      'matrix file of target kernels (default when no --target: matrix/debian-supported.yaml)',
    )
    .option('--shards <n>', 'how many shards at most (1 … 256)', positiveInt('--shards'), 1)
    .option('--refresh', 'refetch package indexes instead of using the cached ones')
    .option('--json', 'print {"include": [...]} for a workflow\'s strategy.matrix (fromJSON)')
    .action(async (opts: PlanOpts) => {
      checkShardCount(opts.shards);
      const matrix = matrixOfTargets(opts);
      const { targets } = await resolvePlan({
        ids: opts.target,
        ...(matrix ? { matrix } : {}),
        ...(opts.refresh ? { refresh: true } : {}),
        signal,
      });
      const shards = planShards(targets, opts.shards);
      process.stdout.write(opts.json ? `${JSON.stringify(matrixOf(shards))}\n` : planTable(shards, targets.length));
    });
}

/**
 * One matrix entry per shard: `shard` for `kfarm build --shard ${{ matrix.shard }}`, and the targets it
 * holds, for a workflow that pins them (`--target` each) against an index that changes between jobs.
 */
export function matrixOf(shards: Shard[]): { include: object[] } {
  return {
    include: shards.map((s) => ({
      shard: `${s.index}/${s.count}`,
      name: `${s.index}/${s.count} ${s.releases.map((r) => r.split('/')[1]).join(' ')}`,
      targets: s.targets.map((t) => t.id),
      releases: s.releases,
      cost: s.cost,
    })),
  };
}

function planTable(shards: Shard[], total: number): string {
  const costs = shards.map((s) => s.cost);
  const largest = Math.max(0, ...costs);
  const all = costs.reduce((a, b) => a + b, 0);
  const head = `${shards.length} shard(s) for ${total} target(s); estimated cost: largest shard ${largest} s, all ${all} s\n`;
  const rows = [
    ['SHARD', 'TARGETS', 'EST.', 'RELEASES'],
    ...shards.map((s) => [`${s.index}/${s.count}`, String(s.targets.length), `${s.cost} s`, s.releases.join(' ')]),
  ];
  return head + formatTable(rows);
}
