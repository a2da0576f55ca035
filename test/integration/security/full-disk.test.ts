import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireEngine, runKfarm, supportedTarget, tempOut, tmpfsMount, unmountAll } from '../../helpers/engine.js';

// Issue: with --out on a nearly full file system, a failed write was swallowed: a 0-byte .ko was placed in
// the tree, stored in the result cache, and served to later runs as `cached`, exit 0. Every write is checked
// now; nothing unverified is placed or cached; a cache that cannot be used never fails a build.
let target: string;

beforeAll(async () => {
  await requireEngine();
  target = (await supportedTarget('bookworm')).id;
});

afterAll(unmountAll);

/** A tmpfs of `size` at a new directory, filled until only `free` bytes are left. */
async function smallDisk(size: string, free: number, options: string[] = []): Promise<string> {
  const dir = await tmpfsMount([`size=${size}`, ...options].join(','));
  const { stdout } = await execa('df', ['-B1', '--output=avail', dir]);
  const avail = Number(stdout.split('\n')[1]);
  if (avail > free) await execa('fallocate', ['-l', String(avail - free), join(dir, 'filler')]);
  return dir;
}

const kfarm = (args: string[], env: Record<string, string> = {}) => runKfarm(args, { env });

async function files(dir: string): Promise<{ path: string; size: number }[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return Promise.all(
    entries
      .filter((e) => e.isFile())
      .map(async (e) => ({ path: join(e.parentPath, e.name), size: (await stat(join(e.parentPath, e.name))).size })),
  );
}

describe('a full disk', () => {
  it('--out with no room left: one line, exit 2, no truncated .ko placed and nothing cached', async () => {
    const disk = await smallDisk('1m', 4096);
    const cache = join(await tempOut(), 'cache');
    const run = await kfarm([
      'build',
      'examples/hello',
      '--target',
      target,
      '--out',
      join(disk, 'out'),
      '--cache-dir',
      cache,
    ]);
    expect(run.exitCode, run.stderr).toBe(2);
    const lines = run.stderr.split('\n').filter((l) => l.startsWith('kfarm:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^kfarm: cannot write .*: no space left on the device$/);
    expect((await files(join(disk, 'out'))).filter((f) => f.path.endsWith('.ko'))).toEqual([]);
    expect(await files(join(cache, 'results'))).toEqual([]);
  });

  it('a result cache with no room left: the build succeeds, one warning, and no partial entry is kept', async () => {
    const cache = await smallDisk('1m', 4096);
    const out = await tempOut();
    const run = await kfarm([
      'build',
      'examples/hello',
      '--target',
      target,
      '--out',
      out,
      '--cache-dir',
      cache,
      '--no-cache',
    ]);
    expect(run.exitCode, run.stderr).toBe(0);
    const cached = await kfarm(['build', 'examples/hello', '--target', target, '--out', out, '--cache-dir', cache]);
    expect(cached.exitCode, cached.stderr).toBe(0);
    expect(cached.stderr.match(/warning: a build could not be stored in the result cache/g)).toHaveLength(1);
    expect(cached.stdout).toMatch(/: built in/);
    // Whatever the cache holds is complete: a second run is not served a truncated module.
    const again = await kfarm(['build', 'examples/hello', '--target', target, '--out', out, '--cache-dir', cache]);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/: built in/);
    const ko = (await files(out)).find((f) => f.path.endsWith('hello.ko'));
    expect(ko?.size).toBeGreaterThan(1000);
  });

  it('a read-only --cache-dir is a usage error before anything runs; one that is a file, too', async () => {
    const cache = await tmpfsMount('size=1m,ro');
    const started = Date.now();
    const run = await kfarm([
      'build',
      'examples/hello',
      '--target',
      target,
      '--out',
      await tempOut(),
      '--cache-dir',
      cache,
    ]);
    expect(run.exitCode, run.stderr).toBe(2);
    expect(run.stderr.trim()).toMatch(new RegExp(`^kfarm: --cache-dir ${cache}: cannot write there \\(EROFS\\)$`));
    expect(Date.now() - started).toBeLessThan(10_000);
    const file = join(await tempOut(), 'a-file');
    await writeFile(file, '');
    const env = await kfarm(['build', 'examples/hello', '--target', target, '--out', await tempOut()], {
      KFARM_CACHE_DIR: file,
    });
    expect(env.exitCode, env.stderr).toBe(2);
    expect(env.stderr.trim()).toBe(`kfarm: KFARM_CACHE_DIR=${file}: not a directory`);
    const info = await kfarm(['cache', 'info', '--cache-dir', file]);
    expect(info.exitCode).toBe(2);
    expect(info.stderr.trim()).toBe(`kfarm: ${file}: the cache directory is not a directory`);
  });
});
