/**
 * bench/scale: the orchestrator's memory with a large matrix. Queues 100 targets (the default kernels
 * repeated under distinct ids, so no extra images are needed) with --jobs 2 and a cold cache, samples the
 * kfarm process's RSS every 100 ms, and prints the peak. Target: ≤ 200 MB. Usage: bench/scale [--targets 100]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runFarm } from '../src/farm/run.js';
import { releaseSources, resolveTargets } from '../src/plan/resolve.js';

const root = new URL('..', import.meta.url).pathname;
const count = Number(process.argv[process.argv.indexOf('--targets') + 1] || 100) || 100;
const kernels = await resolveTargets({ matrix: join(root, 'matrix/debian-supported.yaml') });
const targets = Array.from({ length: count }, (_, i) => {
  const kernel = kernels[i % kernels.length]!;
  return { ...kernel, id: `${kernel.id}#${i}` };
});

const out = await mkdtemp(join(tmpdir(), 'kfarm-scale-'));
let peak = 0;
const sample = () => (peak = Math.max(peak, process.memoryUsage().rss));
const timer = setInterval(sample, 100);
const t0 = performance.now();
let done = 0;
const { report } = await runFarm({
  source: join(root, 'examples/hello'),
  out,
  targets,
  sources: releaseSources,
  jobs: 2,
  cache: false,
  events: { onTargetDone: () => void (++done % 10 === 0 && process.stderr.write(`${done}/${count}\n`)) },
});
clearInterval(timer);
sample();
await rm(out, { recursive: true, force: true });
const wall = (performance.now() - t0) / 1000;
console.log(`bench/scale: ${count} targets queued, --jobs 2, ${report.counts.built} built in ${wall.toFixed(1)} s`);
console.log(`  peak RSS of the orchestrator  ${(peak / 1024 ** 2).toFixed(0)} MB   (target ≤ 200 MB)`);
