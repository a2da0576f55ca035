import { appendFile, cp, mkdir, mkdtemp, readdir, readFile, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { runFarm, type FarmOptions } from '../../src/farm/run.js';
import type { Target } from '../../src/model/result.js';
import { releaseSources, resolveTargets } from '../../src/plan/resolve.js';
import { cli, example, repoRoot, requireEngine, tempOut } from '../helpers/engine.js';

let targets: Target[];
let cacheDir: string;
let source: string;

beforeAll(async () => {
  await requireEngine();
  targets = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  cacheDir = await mkdtemp(join(tmpdir(), 'kfarm-cache-'));
  source = join(await mkdtemp(join(tmpdir(), 'kfarm-cache-src-')), 'hello');
  await cp(example('hello'), source, { recursive: true });
});

/** Runs the farm and records which targets started a container. */
async function farm(extra: Partial<FarmOptions> = {}, which = targets) {
  const started: string[] = [];
  const run = await runFarm({
    source,
    out: await tempOut(),
    targets: which,
    sources: releaseSources,
    cache: { dir: cacheDir },
    events: { onTargetPhase: (t, phase) => phase === 'start' && started.push(t.id) },
    ...extra,
  });
  return { ...run, started, statuses: run.report.targets.map((t) => t.status) };
}

async function cachedModules(): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(join(cacheDir, 'results'), { recursive: true })) {
    if (entry.endsWith('.ko')) found.push(join(cacheDir, 'results', entry));
  }
  return found;
}

describe('result cache', () => {
  it('an unchanged re-run restores every target without starting a container', async () => {
    const first = await farm();
    expect(first.statuses).toEqual(['built', 'built']);
    const second = await farm();
    expect(second.statuses).toEqual(['cached', 'cached']);
    expect(second.started).toEqual([]);
    for (const [i, target] of second.report.targets.entries()) {
      const original = first.report.targets[i];
      expect(target.artifacts).toEqual(original?.artifacts);
      expect(target.makeCommand).toBe(original?.makeCommand);
      const [a, b] = await Promise.all([
        readFile(join(first.reportPath, '..', target.artifacts[0] as string)),
        readFile(join(second.reportPath, '..', target.artifacts[0] as string)),
      ]);
      expect(b.equals(a)).toBe(true);
      expect(await readFile(join(second.reportPath, '..', target.log as string), 'utf8')).toMatch(
        /DKMS make\.log for hello-1\.0/,
      );
    }
  });

  it('changing one source file rebuilds every kernel; touching it without a change does not', async () => {
    await appendFile(join(source, 'hello.c'), '\n/* changed */\n');
    expect((await farm()).statuses).toEqual(['built', 'built']);
    const { utimes } = await import('node:fs/promises');
    await utimes(join(source, 'hello.c'), new Date(), new Date());
    expect((await farm()).statuses).toEqual(['cached', 'cached']);
    // A date the caller chooses is an input like any other: a new one builds, the same one is served.
    expect((await farm({ sourceDateEpoch: 1_700_000_000 })).statuses).toEqual(['built', 'built']);
    expect((await farm({ sourceDateEpoch: 1_700_000_000 })).statuses).toEqual(['cached', 'cached']);
  });

  it('changing only the matrix builds only the new targets', async () => {
    const older = (await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') })).slice(0, 1);
    const more = await farm({}, [...older, ...targets.slice(1)]);
    expect(more.statuses).toEqual(['cached', 'cached']);
    const index = await (
      await import('../../src/plan/debian-index.js')
    ).discoverReleaseIndex('bookworm', { flavours: ['amd64'], includeBackports: false });
    const extra = index.kernels.filter((k) => !targets.some((t) => t.id === k.id)).at(-1) as Target;
    const widened = await farm({}, [...targets, extra]);
    expect(widened.statuses).toEqual(['cached', 'cached', 'built']);
    expect(widened.started).toEqual([extra.id]);
  });

  it('a corrupt or partial entry is detected, rebuilt and never served', async () => {
    const modules = await cachedModules();
    expect(modules.length).toBeGreaterThan(0);
    for (const ko of modules) await writeFile(ko, Buffer.from('not a module'));
    const corrupt = await farm();
    expect(corrupt.statuses).toEqual(['built', 'built']);
    const entries = (await readdir(join(cacheDir, 'results'), { recursive: true })).filter((e) =>
      e.endsWith('entry.json'),
    );
    for (const entry of entries) await truncate(join(cacheDir, 'results', entry), 10);
    expect((await farm()).statuses).toEqual(['built', 'built']);
    expect((await farm()).statuses).toEqual(['cached', 'cached']);
  });

  it('--no-cache builds anyway; kfarm cache info and prune', async () => {
    await farm();
    const out = await tempOut();
    const noCache = await execa('node', [cli, 'build', source, '--out', out, '--no-cache', '--cache-dir', cacheDir], {
      reject: false,
    });
    expect(noCache.exitCode, noCache.stderr).toBe(0);
    expect(noCache.stdout).toMatch(/built in/);
    expect(noCache.stdout).not.toMatch(/cached/);
    // A base image archive no run has used for a month, and a package used today.
    const stale = join(cacheDir, 'images', 'debian-bookworm-0123456789abcdef.tar.zst');
    const fresh = join(cacheDir, 'packages', '0123456789abcdef_linux-kbuild-6.1_6.1.0-1_amd64.deb');
    await mkdir(join(cacheDir, 'images'), { recursive: true });
    await mkdir(join(cacheDir, 'packages'), { recursive: true });
    await writeFile(stale, 'old');
    await writeFile(fresh, Buffer.alloc(2_000_000));
    const month = new Date(Date.now() - 30 * 86_400_000);
    await utimes(stale, month, month);
    // A kernel `kfarm verify` unpacked a month ago: it goes as a whole, though its files are older still.
    const kernel = join(cacheDir, 'kernels', 'linux-image-6.1.0-1-amd64_6.1.1-1_amd64');
    await mkdir(join(kernel, 'root', 'boot'), { recursive: true });
    await writeFile(join(kernel, 'root', 'boot', 'vmlinuz-6.1.0-1-amd64'), 'kernel');
    await writeFile(join(kernel, 'modules.json'), '{}');
    await utimes(join(kernel, 'modules.json'), month, month);
    const infoOf = async () =>
      JSON.parse((await execa('node', [cli, 'cache', 'info', '--cache-dir', cacheDir, '--json'])).stdout) as {
        entries: number;
        packages: { files: number; bytes: number };
        images: { files: number };
        kernels: { files: number };
      };
    const info = await infoOf();
    expect(info.entries).toBeGreaterThanOrEqual(2);
    expect(info.packages.files).toBeGreaterThanOrEqual(1);
    expect(info.packages.bytes).toBeGreaterThanOrEqual(2_000_000);
    expect(info.images.files).toBe(1);
    expect(info.kernels.files).toBe(1);
    const keep = await execa('node', [cli, 'cache', 'prune', '--older-than', '7d', '--cache-dir', cacheDir]);
    expect(keep.stdout).toMatch(
      /^removed 0 cached build\(s\), 0\.0 MiB; 0 package file\(s\), 0\.0 MiB, 1 base image archive/,
    );
    expect(await stat(stale).catch(() => undefined)).toBeUndefined();
    expect((await stat(fresh)).size).toBe(2_000_000);
    expect(keep.stdout).toMatch(/, 1 unpacked kernel\(s\), /);
    expect(await stat(kernel).catch(() => undefined)).toBeUndefined();
    const prune = await execa('node', [cli, 'cache', 'prune', '--cache-dir', cacheDir]);
    expect(prune.stdout).toMatch(/^removed [1-9]\d* cached build\(s\), [\d.]+ MiB; [1-9]\d* package file/);
    const after = await infoOf();
    expect([after.entries, after.packages.files]).toEqual([0, 0]);
    const bad = await execa('node', [cli, 'cache', 'prune', '--older-than', 'soon'], { reject: false });
    expect(bad.exitCode).toBe(2);
  });
});
