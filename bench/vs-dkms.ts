/**
 * bench/vs-dkms: the same module for the same N bookworm kernels, built (1) by the host's DKMS one kernel
 * after another — what `dkms autoinstall` and kernel upgrades do — and (2) by kfarm with warm images and a
 * cold cache. Prints wall times, host CPU seconds, the ideal bound (CPU seconds / cores) and the ratios.
 * Needs root on a Debian 12 host (installs dkms and the kernels' headers with apt). Usage:
 *   bench/vs-dkms [--kernels 5] [--jobs N]
 */
import { execa } from 'execa';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveTargets } from '../src/plan/resolve.js';
import { containerCpu, cpuTimes } from './cpu.js';
import { generateModule } from './gen-module.js';

const root = new URL('..', import.meta.url).pathname;
const count = Number(process.argv[process.argv.indexOf('--kernels') + 1] || 5) || 5;
const cores = cpus().length;
const log = (line: string) => process.stderr.write(`${line}\n`);

async function measure(run: () => Promise<void>): Promise<{ wall: number; cpu: number; inContainers: number }> {
  const before = await cpuTimes();
  const containersBefore = (await containerCpu()) ?? NaN;
  const t0 = performance.now();
  await run();
  const wall = (performance.now() - t0) / 1000;
  const inContainers = ((await containerCpu()) ?? NaN) - containersBefore;
  return { wall, cpu: (await cpuTimes()).busy - before.busy, inContainers };
}

const kernels = (await resolveTargets({ matrix: join(root, 'bench/vs-dkms.yaml') })).slice(0, count);
if (kernels.length < count) throw new Error(`only ${kernels.length} bookworm kernels available`);
log(`kernels: ${kernels.map((k) => k.kernel).join(', ')}`);

log("host: installing dkms and the kernels' headers (not measured)…");
await execa(
  'apt-get',
  [
    'install',
    '-y',
    '-q',
    '--no-install-recommends',
    'dkms',
    'build-essential',
    ...kernels.map((k) => k.headersPackage),
  ],
  {
    env: { DEBIAN_FRONTEND: 'noninteractive' },
  },
);

const work = await mkdtemp(join(tmpdir(), 'kfarm-vs-dkms-'));
const modules = [
  { label: 'single-file module (~2,500 lines)', name: 'kfbench_single', files: 1, functions: 40 },
  { label: 'multi-file driver (61 files, ~37,000 lines)', name: 'kfbench_multi', files: 60, functions: 10 },
];
// `--jobs N` is passed on to kfarm (its default is one build per core).
const jobsAt = process.argv.indexOf('--jobs');
const jobsArgs = jobsAt > 0 ? ['--jobs', process.argv[jobsAt + 1] ?? ''] : [];
const targetArgs = [...kernels.flatMap((k) => ['--target', k.id]), ...jobsArgs];

log('kfarm: warming images (not measured)…');
await generateModule(join(work, 'warm'), { name: 'kfbench_warm', files: 1, functions: 1 });
const warm = await execa(
  'node',
  [
    join(root, 'bin/kfarm.js'),
    'build',
    join(work, 'warm'),
    ...targetArgs,
    '--out',
    join(work, 'warm-out'),
    '--no-cache',
  ],
  { reject: false },
);
if (warm.exitCode !== 0) throw new Error(`kfarm warm-up failed:\n${warm.stderr}`);

// DKMS's first build on a host generates its module-signing key (/var/lib/dkms/mok.key): a one-time cost.
log('dkms: warming (first build generates the signing key; not measured)…');
await execa('dkms', ['remove', 'kfbench_warm/1.0', '--all'], { reject: false });
await rm('/usr/src/kfbench_warm-1.0', { recursive: true, force: true });
await cp(join(work, 'warm'), '/usr/src/kfbench_warm-1.0', { recursive: true });
await execa('dkms', ['add', 'kfbench_warm/1.0']);
await execa('dkms', ['build', 'kfbench_warm/1.0', '-k', kernels[0]!.kernel]);
await execa('dkms', ['remove', 'kfbench_warm/1.0', '--all'], { reject: false });
await rm('/usr/src/kfbench_warm-1.0', { recursive: true, force: true });

const rows: string[] = [];
for (const m of modules) {
  const src = join(work, m.name);
  await generateModule(src, m);

  const usr = `/usr/src/${m.name}-1.0`;
  await execa('dkms', ['remove', `${m.name}/1.0`, '--all'], { reject: false });
  await rm(usr, { recursive: true, force: true });
  await cp(src, usr, { recursive: true });
  await execa('dkms', ['add', `${m.name}/1.0`]);
  log(`dkms: ${m.label}…`);
  const dkms = await measure(async () => {
    for (const k of kernels) await execa('dkms', ['build', `${m.name}/1.0`, '-k', k.kernel]);
  });
  await execa('dkms', ['remove', `${m.name}/1.0`, '--all'], { reject: false });
  await rm(usr, { recursive: true, force: true });

  log(`kfarm: ${m.label}…`);
  const out = join(work, `${m.name}-out`);
  const kfarm = await measure(async () => {
    const run = await execa(
      'node',
      [join(root, 'bin/kfarm.js'), 'build', src, ...targetArgs, '--out', out, '--no-cache'],
      { reject: false },
    );
    if (run.exitCode !== 0) throw new Error(`kfarm failed:\n${run.stderr}\n${run.stdout}`);
  });

  // What a run costs whatever it builds (node's start, discovery from the cached indexes, reports): the same
  // command again with the result cache on, where every target is a hit and no container starts.
  const kfarmArgs = [join(root, 'bin/kfarm.js'), 'build', src, ...targetArgs, '--out', `${out}-cached`];
  await execa('node', kfarmArgs);
  const fixed = await measure(async () => {
    await execa('node', kfarmArgs);
  });
  const perTarget = (kfarm.cpu - kfarm.inContainers - fixed.cpu) / kernels.length;

  const ideal = (cpu: number) => cpu / cores;
  rows.push(
    `| ${m.label} | ${dkms.wall.toFixed(1)} s | ${kfarm.wall.toFixed(1)} s | **${(kfarm.wall / dkms.wall).toFixed(2)}** | ` +
      `${ideal(dkms.cpu).toFixed(1)} s (${(dkms.wall / ideal(dkms.cpu)).toFixed(2)}×) | ` +
      `${ideal(kfarm.cpu).toFixed(1)} s (${(kfarm.wall / ideal(kfarm.cpu)).toFixed(2)}×) | ` +
      `${((kfarm.cpu - kfarm.inContainers) / kernels.length).toFixed(2)} s | ${fixed.cpu.toFixed(2)} s | ` +
      `**${perTarget.toFixed(2)} s** |`,
  );
}
await rm(work, { recursive: true, force: true });

console.log(
  `bench/vs-dkms: ${kernels.length} bookworm kernels, ${cores} cores, host dkms ${(await execa('dkms', ['--version'])).stdout.trim()}`,
);
console.log('');
console.log(
  '| module | DKMS, one kernel after another | kfarm (warm images, cold cache) | kfarm / DKMS | ' +
    'ideal for DKMS (wall/ideal) | ideal for kfarm (wall/ideal) | outside containers per target | ' +
    'fixed per run | overhead per target |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const row of rows) console.log(row);
console.log('');
console.log('ideal = host CPU seconds the run used / cores: no scheduler can finish that work sooner.');
console.log(
  'outside containers per target = (host CPU s − CPU s inside the containers, from the docker cgroup) / kernels: ' +
    'what kfarm and the engine (dockerd, containerd, runc) spend besides the builds themselves; fixed per run = ' +
    'host CPU s of the same run with every target a cache hit (no container); overhead per target = the first ' +
    'less the fixed cost, per kernel: what one more target costs',
);
