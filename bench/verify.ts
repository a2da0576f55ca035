/**
 * bench/verify: the QEMU load test's cost per kernel. Builds a shipped example (default examples/hello) for the
 * default kernels (matrix/debian-supported.yaml), warms the kernel image cache with one verification (not
 * measured), then boots each kernel `runs` times (default 3), one boot at a time, and prints the median
 * boot + insmod + rmmod + power-off time per kernel and their mean. Target: ≤ 15 s per kernel under TCG.
 * Run: `bench/verify [example] [runs]`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runFarm } from '../src/farm/run.js';
import { releaseSources, resolveTargets } from '../src/plan/resolve.js';
import { detectAccelerator, verifyTargets } from '../src/verify/index.js';

const root = new URL('..', import.meta.url).pathname;
const example = process.argv[2] ?? 'examples/hello';
const runs = Number(process.argv[3] ?? 3);
const targets = await resolveTargets({ matrix: join(root, 'matrix/debian-supported.yaml') });
const out = await mkdtemp(join(tmpdir(), 'kfarm-bench-verify-'));
try {
  const { report } = await runFarm({ source: join(root, example), out, targets, sources: releaseSources });
  const bad = report.targets.filter((t) => t.status !== 'built' && t.status !== 'cached');
  if (bad.length) throw new Error(`build failed: ${bad.map((t) => `${t.id} ${t.status} ${t.error ?? ''}`).join('; ')}`);
  process.stderr.write('warming the kernel cache (not measured)…\n');
  const warm = await verifyTargets(out, report, { jobs: 2 });
  for (const [id, result] of warm)
    if (result.status !== 'loaded') throw new Error(`${id}: ${result.status} ${result.reason ?? ''}`);

  const accel = await detectAccelerator();
  const perKernel: Array<{ id: string; seconds: number; all: number[] }> = [];
  for (const target of report.targets) {
    const all: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const result = (await verifyTargets(out, report, { targets: [target.id], jobs: 1 })).get(target.id);
      if (result?.status !== 'loaded') throw new Error(`${target.id}: ${result?.status} ${result?.reason ?? ''}`);
      all.push((performance.now() - t0) / 1000);
    }
    const sorted = [...all].sort((a, b) => a - b);
    perKernel.push({ id: target.id, seconds: sorted[Math.floor(sorted.length / 2)] as number, all });
  }
  const mean = perKernel.reduce((s, k) => s + k.seconds, 0) / perKernel.length;
  console.log(
    `bench/verify: ${example}, ${accel.toUpperCase()}, kernel images cached, one boot at a time (median of ${runs})`,
  );
  for (const k of perKernel)
    console.log(
      `  ${k.id.padEnd(40)} ${k.seconds.toFixed(2)} s   (runs: ${k.all.map((s) => s.toFixed(2)).join(', ')})`,
    );
  console.log(`  ${'mean'.padEnd(40)} ${mean.toFixed(2)} s   (target ≤ 15 s per kernel)`);
} finally {
  await rm(out, { recursive: true, force: true });
}
