/**
 * bench/warm: an unchanged re-run of a 10-kernel matrix with warm images and a warm result cache, timed
 * as a user runs it (the whole `kfarm build` process). Target: ≤ 2 s. Usage: bench/warm [example-dir]
 */
import { execa } from 'execa';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const example = process.argv[2] ?? 'examples/hello';
const cacheDir = await mkdtemp(join(tmpdir(), 'kfarm-warm-cache-'));
const kfarm = async (out: string) => {
  const t0 = performance.now();
  const run = await execa(
    'node',
    [join(root, 'bin/kfarm.js'), 'build', example, '--matrix', 'bench/warm.yaml', '--out', out],
    {
      cwd: root,
      reject: false,
      env: { CI: 'true', KFARM_CACHE_DIR: cacheDir },
    },
  );
  const wall = (performance.now() - t0) / 1000;
  if (run.exitCode !== 0) throw new Error(`kfarm failed (exit ${run.exitCode}):\n${run.stderr}`);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
    counts: Record<string, number>;
    targets: unknown[];
  };
  return { wall, report };
};

process.stderr.write('first run: images and cache (not measured)…\n');
const first = await kfarm(await mkdtemp(join(tmpdir(), 'kfarm-warm-')));
const walls: number[] = [];
let cached = 0;
for (let i = 0; i < 5; i++) {
  const out = await mkdtemp(join(tmpdir(), 'kfarm-warm-'));
  const { wall, report } = await kfarm(out);
  walls.push(wall);
  cached = report.counts['cached'] ?? 0;
  await rm(out, { recursive: true, force: true });
}
await rm(cacheDir, { recursive: true, force: true });
walls.sort((a, b) => a - b);
console.log(
  `bench/warm: ${example}, ${first.report.targets.length} kernels, unchanged re-run (${cached} cached), 5 runs`,
);
console.log(
  `  wall time  median ${walls[2]!.toFixed(2)} s, min ${walls[0]!.toFixed(2)} s, max ${walls[4]!.toFixed(2)} s   (target ≤ 2 s)`,
);
