/**
 * bench/cold: what a machine where nothing is warm waits for.
 *   1. One new kernel of a release whose base image exists, package cache empty: the whole `kfarm build`
 *      wall time, the headers image's preparation time, bytes downloaded and disk added (target ≤ 5 s, ≤ 70 MB).
 *   2. The release's base image: bootstrapped with a cold package cache, restored from the archive that left
 *      in the cache dir (target ≤ 30 s), bootstrapped with a warm package cache and no archive.
 *   3. `kfarm build examples/hello` on an engine with no images: empty cache dir (target ≤ 90 s), then the
 *      cache dir that run left (target ≤ 30 s).
 * Usage: bench/cold [release] [kernel|base|engine …]   (default bookworm, all parts; the base image is re-made)
 */
import { execa } from 'execa';
import { cp, lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectEngine, newSession } from '../src/engine/index.js';
import { baseRef, ImageStore } from '../src/images/image-store.js';
import { discoverReleaseIndex } from '../src/plan/debian-index.js';
import { releaseSources } from '../src/plan/debian-releases.js';
import { cacheRoot } from '../src/util/cache-dir.js';
import { startSecondEngine } from '../test/helpers/second-engine.js';

const root = new URL('..', import.meta.url).pathname;
const release = process.argv[2] ?? 'bookworm';
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir, { recursive: true }).catch(() => [] as string[])) {
    const info = await lstat(join(dir, name));
    if (info.isFile()) total += info.size;
  }
  return total;
}

/** A cache dir with the package indexes (discovery is not what this measures) and nothing else. */
async function freshCacheDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-cold-cache-'));
  await cp(join(cacheRoot(), 'index'), join(dir, 'index'), { recursive: true }).catch(() => undefined);
  return dir;
}

async function newKernel(): Promise<void> {
  const index = await discoverReleaseIndex(release, { flavours: ['amd64'], includeBackports: false });
  // Not the default kernel: the one a user adds, whose image no run has made yet (it is removed first).
  const kernel = index.kernels.filter((k) => k.kernel !== index.defaults['amd64']).at(-1);
  if (!kernel) throw new Error(`no second ${release} amd64 kernel`);
  // Its headers volumes, found as a run finds them, are removed: this kernel's, its -common's and its kbuild's.
  const engine = await connectEngine(newSession(`bench-cold-${process.pid}`));
  const probe = new ImageStore(engine, { logDir: join(await freshCacheDir(), 'logs'), sources: releaseSources });
  const volumes = (await probe.headers(kernel)).headers.mounts.map((m) => m.volume);
  await engine.settle(30_000);
  for (const name of volumes) {
    await engine.removeVolume(`${name}.ok`);
    await engine.removeVolume(name);
  }
  const cacheDir = await freshCacheDir();
  const out = await mkdtemp(join(tmpdir(), 'kfarm-cold-out-'));
  const t0 = performance.now();
  const run = await execa(
    'node',
    [join(root, 'bin/kfarm.js'), 'build', 'examples/hello', '--target', kernel.id, '--out', out, '--no-cache'],
    { cwd: root, reject: false, env: { CI: 'true', KFARM_CACHE_DIR: cacheDir } },
  );
  const wall = (performance.now() - t0) / 1000;
  if (run.exitCode !== 0) throw new Error(`kfarm failed (exit ${run.exitCode}):\n${run.stdout}\n${run.stderr}`);
  const ready = /image \S+ ready in ([\d.]+) s/.exec(`${run.stdout}\n${run.stderr}`)?.[1];
  const downloaded = await dirBytes(join(cacheDir, 'packages'));
  let added = 0;
  for (const name of volumes) added += await dirBytes(join('/var/lib/docker/volumes', name, '_data'));
  console.log(`bench/cold: one new ${release} kernel (${kernel.kernel}), base image present, package cache empty`);
  console.log(`  kfarm build wall ${wall.toFixed(1)} s, headers ready in ${ready ?? '?'} s   (target ≤ 5 s)`);
  console.log(`  downloaded ${mb(downloaded)}, disk added ${mb(added)} (its three volumes)   (target ≤ 70 MB)`);
  await rm(cacheDir, { recursive: true, force: true });
  await rm(out, { recursive: true, force: true });
}

async function baseImage(): Promise<void> {
  const engine = await connectEngine(newSession(`bench-cold-${process.pid}`));
  const cacheDir = await freshCacheDir();
  const store = () => new ImageStore(engine, { logDir: join(cacheDir, 'logs'), sources: releaseSources });
  const timed = async () => {
    await engine.removeImage(baseRef(release));
    const t0 = performance.now();
    await store().base(release);
    return (performance.now() - t0) / 1000;
  };
  const archives = join(cacheDir, 'images');
  const cold = await timed();
  const cached = await dirBytes(join(cacheDir, 'packages'));
  const archived = await dirBytes(archives);
  const restored = await timed();
  await rm(archives, { recursive: true, force: true });
  const warm = await timed();
  console.log(`bench/cold: the ${release} base image, indexes fetched by apt each time`);
  console.log(
    `  mmdebstrap, package cache cold ${cold.toFixed(1)} s (downloads ${mb(cached)}), warm ${warm.toFixed(1)} s`,
  );
  console.log(`  restored from the cache dir's archive (${mb(archived)}) ${restored.toFixed(1)} s   (target ≤ 30 s)`);
  await rm(cacheDir, { recursive: true, force: true });
}

/**
 * `kfarm build examples/hello` (default matrix) on an engine with no image at all (a private dockerd with an
 * empty data-root), first with an empty cache dir, then with the cache dir the first run left (a CI cache
 * restored; its build results removed, so the builds run again).
 */
async function emptyEngine(): Promise<void> {
  const cacheDir = await mkdtemp(join(tmpdir(), 'kfarm-cold-cache-'));
  const run = async () => {
    const engine = await startSecondEngine({ name: 'benchcold', storage: 'disk' });
    const out = await mkdtemp(join(tmpdir(), 'kfarm-cold-out-'));
    try {
      const t0 = performance.now();
      const build = await execa('node', [join(root, 'bin/kfarm.js'), 'build', 'examples/hello', '--out', out], {
        cwd: root,
        reject: false,
        env: { CI: 'true', KFARM_CACHE_DIR: cacheDir, DOCKER_HOST: engine.dockerHost },
      });
      const wall = (performance.now() - t0) / 1000;
      if (build.exitCode !== 0)
        throw new Error(`kfarm failed (exit ${build.exitCode}):\n${build.stdout}\n${build.stderr}`);
      const images = await execa('docker', [
        '-H',
        engine.dockerHost,
        'system',
        'df',
        '--format',
        '{{.Type}} {{.Size}}',
      ]);
      const ready = [...`${build.stdout}\n${build.stderr}`.matchAll(/image (\S+) ready in ([\d.]+) s/g)];
      const steps = ready.map(([, ref, s]) => `${ref} ${s} s`).join(', ');
      return { wall, steps, engineDisk: images.stdout.split('\n')[0] ?? '' };
    } finally {
      await engine.stop();
      await rm(out, { recursive: true, force: true });
    }
  };
  const empty = await run();
  const cacheBytes = await dirBytes(cacheDir);
  await rm(join(cacheDir, 'results'), { recursive: true, force: true });
  const restored = await run();
  console.log('bench/cold: kfarm build examples/hello (default matrix) on an engine with no images');
  console.log(`  empty cache dir ${empty.wall.toFixed(1)} s   (target ≤ 90 s; engine ${empty.engineDisk})`);
  console.log(`    ${empty.steps}`);
  console.log(`  restored cache dir (${mb(cacheBytes)}) ${restored.wall.toFixed(1)} s   (target ≤ 30 s)`);
  console.log(`    ${restored.steps}`);
  await rm(cacheDir, { recursive: true, force: true });
}

const parts = process.argv.slice(3);
const want = (part: string) => parts.length === 0 || parts.includes(part);
if (want('kernel')) await newKernel();
if (want('base')) await baseImage();
if (want('engine')) await emptyEngine();
