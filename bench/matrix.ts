/**
 * bench/matrix: builds a shipped example over five kernels (bench/matrix.yaml) with warm images and a cold
 * result cache (every target compiles), and prints wall time, the sum of per-target build times, host CPU
 * seconds and wall / (CPU seconds / cores): 1.0 means every core was busy for the whole run.
 * Run: `npm run build && bench/matrix [example]`.
 */
import { execa } from 'execa';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuTimes } from './cpu.js';

const root = new URL('..', import.meta.url).pathname;
const example = process.argv[2] ?? 'examples/realworld';
const kfarm = (args: string[]) =>
  execa('node', [join(root, 'bin/kfarm.js'), ...args], { cwd: root, reject: false, env: { CI: 'true' } });

const warm = await mkdtemp(join(tmpdir(), 'kfarm-bench-'));
process.stderr.write('warming images (not measured)…\n');
const first = await kfarm(['build', example, '--matrix', 'bench/matrix.yaml', '--out', warm]);
if (first.exitCode !== 0) throw new Error(`warm-up failed (exit ${first.exitCode}):\n${first.stderr}`);

const runs: { wall: number; cpu: number; sum: number; targets: number }[] = [];
for (let i = 0; i < 3; i++) {
  const out = await mkdtemp(join(tmpdir(), 'kfarm-bench-'));
  const before = await cpuTimes();
  const t0 = performance.now();
  const run = await kfarm(['build', example, '--matrix', 'bench/matrix.yaml', '--out', out, '--no-cache']);
  const wall = (performance.now() - t0) / 1000;
  const after = await cpuTimes();
  if (run.exitCode !== 0) throw new Error(`run failed (exit ${run.exitCode}):\n${run.stderr}`);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as { targets: { durationMs: number }[] };
  runs.push({
    wall,
    cpu: after.busy - before.busy,
    sum: report.targets.reduce((s, t) => s + t.durationMs, 0) / 1000,
    targets: report.targets.length,
  });
  await rm(out, { recursive: true, force: true });
}
await rm(warm, { recursive: true, force: true });

const cores = cpus().length;
const best = runs.sort((a, b) => a.wall / (a.cpu / cores) - b.wall / (b.cpu / cores))[Math.floor(runs.length / 2)]!;
const ratio = best.wall / (best.cpu / cores);
console.log(
  `bench/matrix: ${example}, ${best.targets} kernels, ${cores} cores, warm images (median of ${runs.length} runs)`,
);
console.log(`  wall time                    ${best.wall.toFixed(2)} s`);
console.log(`  sum of per-target durations  ${best.sum.toFixed(2)} s`);
console.log(`  host CPU seconds             ${best.cpu.toFixed(2)} s`);
console.log(`  wall / (CPU s / cores)       ${ratio.toFixed(2)}   (target ≤ 1.25)`);
