/**
 * bench/matrix: builds a shipped example over five kernels (bench/matrix.yaml) with warm images and a cold
 * result cache (every target compiles), and prints wall time, the sum of per-target build times, host CPU
 * seconds and wall / (CPU seconds / cores): 1.0 means every core was busy for the whole run.
 * Run: `npm run build && bench/matrix [example]`.
 *
 * `bench/matrix --empty-engine [matrix]` instead builds examples/hello for every amd64-machine target of a
 * matrix (default matrix/debian-all.yaml) on an engine with no images (a private dockerd, data-root on disk)
 * and an empty cache dir, and prints wall time, bytes downloaded and disk used (target ≤ 15 min).
 */
import { execa } from 'execa';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSecondEngine } from '../test/helpers/second-engine.js';
import { cpuTimes } from './cpu.js';

const root = new URL('..', import.meta.url).pathname;
const emptyEngine = process.argv[2] === '--empty-engine';
const example = (!emptyEngine && process.argv[2]) || 'examples/realworld';
const kfarm = (args: string[]) =>
  execa('node', [join(root, 'bin/kfarm.js'), ...args], { cwd: root, reject: false, env: { CI: 'true' } });

async function warmMatrix(): Promise<void> {
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
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
      targets: { durationMs: number }[];
    };
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
}

/** Failed targets grouped by their error (first 100 characters), so an archive's 404 reads as one line. */
function printFailures(targets: { id: string; status: string; error?: string }[]): void {
  const groups = new Map<string, string[]>();
  for (const t of targets.filter((t) => t.status === 'failed')) {
    const why = (t.error ?? '?').slice(0, 100);
    groups.set(why, [...(groups.get(why) ?? []), t.id]);
  }
  for (const [why, ids] of groups) console.log(`    ${ids.length} failed: ${why} (${ids.slice(0, 3).join(', ')}…)`);
}

const du = async (path: string) => Number((await execa('du', ['-sb', path])).stdout.split('\t')[0]);
const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;

async function emptyEngineMatrix(matrix: string): Promise<void> {
  const engine = await startSecondEngine({ name: 'benchall', storage: 'disk' });
  const cacheDir = await mkdtemp(join(tmpdir(), 'kfarm-bench-cache-'));
  const out = await mkdtemp(join(tmpdir(), 'kfarm-bench-'));
  try {
    const t0 = performance.now();
    const run = await execa(
      'node',
      [join(root, 'bin/kfarm.js'), 'build', 'examples/hello', '--matrix', matrix, '--out', out, '--jobs', '2'],
      { cwd: root, reject: false, env: { CI: 'true', KFARM_CACHE_DIR: cacheDir, DOCKER_HOST: engine.dockerHost } },
    );
    const wall = (performance.now() - t0) / 1000;
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
      targets: { id: string; status: string; error?: string }[];
    };
    const statuses = new Map<string, number>();
    for (const t of report.targets) statuses.set(t.status, (statuses.get(t.status) ?? 0) + 1);
    const downloaded = (await du(join(cacheDir, 'packages'))) + (await du(join(cacheDir, 'index')));
    const engineDisk = await du(join('/tmp', 'kfarm-e2-benchall', 'data'));
    console.log(
      `bench/matrix --empty-engine: examples/hello over ${matrix}, empty engine and cache dir, ${cpus().length} cores`,
    );
    console.log(
      `  exit ${run.exitCode}, ${report.targets.length} targets: ${[...statuses].map(([k, n]) => `${n} ${k}`).join(', ')}`,
    );
    printFailures(report.targets);
    console.log(`  wall ${(wall / 60).toFixed(1)} min   (target ≤ 15 min)`);
    console.log(
      `  downloaded ${gb(downloaded)} (packages and indexes), engine disk ${gb(engineDisk)}, cache dir ${gb(await du(cacheDir))}`,
    );
  } finally {
    await engine.stop();
    await rm(out, { recursive: true, force: true });
    await rm(cacheDir, { recursive: true, force: true });
  }
}

if (emptyEngine) await emptyEngineMatrix(process.argv[3] ?? 'matrix/debian-all.yaml');
else await warmMatrix();
