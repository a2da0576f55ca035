import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connectEngine } from '../../src/engine/index.js';
import { newSession } from '../../src/engine/labels.js';
import { baseRef, headersRef, ImageStore } from '../../src/images/image-store.js';
import { restoreRootfs, rootfsArchivePath } from '../../src/images/rootfs-archive.js';
import { discoverReleaseIndex } from '../../src/plan/debian-index.js';
import { releaseSources } from '../../src/plan/resolve.js';
import { kfarmContainers, repoRoot, requireEngine, tempOut } from '../helpers/engine.js';

describe('builder images', () => {
  it('a headers image asked for twice at once is prepared once, labelled with what it holds, then reused', async () => {
    const docker = await requireEngine();
    // The oldest bookworm kernel, which no other test builds for, so this test owns (and removes) its image.
    const index = await discoverReleaseIndex('bookworm', { flavours: ['amd64'], includeBackports: false });
    const target = index.kernels
      .filter((k) => k.kernel !== index.defaults.amd64 && k.kernel.startsWith('6.1.0-'))
      .at(0);
    expect(target).toBeDefined();
    if (!target) return;
    const ref = headersRef('bookworm', target.kernel);
    await docker
      .getImage(ref)
      .remove({ force: true })
      .catch(() => undefined);

    const prepared: string[] = [];
    const engine = await connectEngine(newSession('images-test'));
    const logDir = await tempOut();
    const first = new ImageStore(engine, {
      logDir,
      sources: releaseSources,
      events: { onPrepare: (r) => prepared.push(r) },
    });
    // A second store stands for a second kfarm process: only the lock in the shared directory keeps them apart.
    const other = new ImageStore(engine, { logDir, sources: releaseSources });
    const dangling = async () => (await docker.listImages({ filters: { dangling: ['true'] } })).length;
    const danglingBefore = await dangling();
    const [a, b, c] = await Promise.all([first.headers(target), first.headers(target), other.headers(target)]);
    expect(a).toBe(ref);
    expect(b).toBe(ref);
    expect(c).toBe(ref);
    expect(prepared.filter((r) => r === ref)).toHaveLength(1);
    // Prepared once: a second commit under the same tag would have left the first image dangling.
    expect(await dangling()).toBe(danglingBefore);

    const labels = (await docker.getImage(ref).inspect()).Config.Labels;
    expect(labels).toMatchObject({
      'kfarm.role': 'headers',
      'kfarm.release': 'bookworm',
      'kfarm.kernel': target.kernel,
      'kfarm.headers.package': target.headersPackage,
      'kfarm.headers.version': target.headersVersion,
      'kfarm.session': '',
    });
    expect(labels['kfarm.headers.files']).toMatch(/^[0-9a-f]{16}$/);
    // The three .debs were downloaded into the package cache, each once, under their SHA-256.
    const cached = await readdir(join(logDir, '..', 'packages'));
    for (const file of target.debs ?? []) expect(cached).toContain(basename(first.packagePath(file)));
    expect(target.debs?.map((p) => p.package)).toEqual([
      target.headersPackage,
      target.commonPackage,
      expect.stringMatching(/^linux-kbuild-/),
    ]);
    expect(labels['kfarm.recipe']).toMatch(/^[0-9a-f]{16}$/);

    prepared.length = 0;
    const second = new ImageStore(engine, {
      logDir,
      sources: releaseSources,
      events: { onPrepare: (r) => prepared.push(r) },
    });
    expect(await second.headers(target)).toBe(ref);
    expect(prepared).toEqual([]);
    // The preparing container is removed in the background once its layer is committed; settle waits for that.
    expect(await engine.settle(30_000)).toBe(0);
    expect(await kfarmContainers(docker)).toEqual([]);
    await docker.getImage(ref).remove({ force: true });
  });

  it('a headers package the archive republished under the same version makes a new image, not the stale one', async () => {
    const docker = await requireEngine();
    const index = await discoverReleaseIndex('bookworm', { flavours: ['amd64'], includeBackports: false });
    const target = index.kernels.filter((k) => k.kernel.startsWith('6.1.0-')).at(0);
    const kbuild = target?.debs?.at(-1);
    if (!target?.debs || !kbuild) throw new Error('no bookworm kernel with packages');
    const engine = await connectEngine(newSession('images-republish-test'));
    const logDir = join(await tempOut(), 'logs');
    const store = () => new ImageStore(engine, { logDir, sources: releaseSources });
    const ref = headersRef('bookworm', target.kernel);
    const before = (await docker.getImage(await store().headers(target)).inspect()).Id;

    // Rebuilt with the same name and version, as a binNMU-less rebuild in the archive would be: other bytes.
    const work = await tempOut();
    const original = await store().fetchPackages([kbuild]);
    await execa('dpkg-deb', ['-R', original[0] as string, join(work, 'tree')]);
    await execa('dpkg-deb', ['--root-owner-group', '-Zgzip', '-b', join(work, 'tree'), join(work, 'rebuilt.deb')]);
    const body = await readFile(join(work, 'rebuilt.deb'));
    const server = createServer((_req, res) => res.writeHead(200).end(body));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${basename(new URL(kbuild.url).pathname)}`;
      const sha256 = createHash('sha256').update(body).digest('hex');
      const republished = {
        ...target,
        debs: [...target.debs.slice(0, 2), { ...kbuild, url, sha256, size: body.length }],
      };
      const after = await docker.getImage(await store().headers(republished)).inspect();
      expect(after.Id).not.toBe(before);
      expect(after.Config.Labels['kfarm.headers.version']).toBe(target.headersVersion);
      expect(await readdir(join(logDir, '..', 'packages'))).toContain(`${sha256.slice(0, 16)}_${basename(url)}`);
    } finally {
      server.close();
      await engine.settle(30_000);
      // Leave the image as the archive has it for the other tests.
      await docker.getImage(ref).remove({ force: true });
    }
  });

  it('a failed preparation names its log, and the log is still there afterwards', async () => {
    const docker = await requireEngine();
    const engine = await connectEngine(newSession('images-fail-test'));
    const logDir = join(await tempOut(), 'logs');
    const store = new ImageStore(engine, { logDir, sources: releaseSources });
    const index = await discoverReleaseIndex('bookworm', { flavours: ['amd64'], includeBackports: false });
    const kbuild = index.kernels.at(-1)?.debs?.at(-1);
    expect(kbuild?.package).toMatch(/^linux-kbuild-/);
    // A real, verified .deb that is not a kernel's headers: it unpacks, and the check after it fails.
    const spec = {
      distro: 'debian' as const,
      release: 'bookworm',
      kernel: '0.0.0-0-kfarm-none',
      headersPackage: 'linux-headers-0.0.0-0-kfarm-none',
      headersVersion: '0.0.0-0',
      suite: 'bookworm',
      backports: false,
      debs: kbuild ? [kbuild] : [],
    };
    const error = await store.headers(spec).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    const log = /\(log: ([^)]+)\)/.exec(error?.message ?? '')?.[1];
    expect(error?.message).toMatch(
      /^preparing kfarm\/debian-bookworm:0\.0\.0-0-kfarm-none failed: unpacking linux-headers-0\.0\.0-0-kfarm-none exited 1 \(log: .*\): kfarm: the headers installed no \/lib\/modules\/0\.0\.0-0-kfarm-none\/build\/Makefile$/,
    );
    expect(log?.startsWith(logDir)).toBe(true);
    expect(await readFile(log as string, 'utf8')).toMatch(/unpacking [0-9a-f]{16}_linux-kbuild-/);
    expect(
      await docker
        .getImage(headersRef('bookworm', spec.kernel))
        .inspect()
        .catch(() => undefined),
    ).toBeUndefined();
    expect(await kfarmContainers(docker)).toEqual([]);
  });

  it('a base image comes back from its archive in the cache dir, layer for layer; a damaged archive is dropped', async () => {
    const docker = await requireEngine();
    const engine = await connectEngine(newSession('images-rootfs-test'));
    const cacheDir = process.env['KFARM_CACHE_DIR'] ?? (await tempOut());
    const store = () =>
      new ImageStore(engine, {
        logDir: join(cacheDir, 'logs'),
        sources: releaseSources,
        packageDir: join(cacheDir, 'packages'),
        rootfsDir: join(cacheDir, 'images'),
      });
    const recipe = await store().recipe();
    const archive = rootfsArchivePath(join(cacheDir, 'images'), 'bookworm', recipe.baseHash);
    await store().base('bookworm');
    if ((await stat(archive).catch(() => undefined)) === undefined) {
      // The engine's base predates this cache dir (on a fresh machine an earlier test made both): make it again.
      await engine.removeImage(baseRef('bookworm'));
      await store().base('bookworm');
    }
    expect((await readdir(join(cacheDir, 'images'))).filter((n) => n.includes('.tmp-'))).toEqual([]);
    const restored = 'kfarm/test-rootfs:restored';
    const labels = { 'kfarm.role': 'test', 'kfarm.recipe': recipe.baseHash };
    try {
      expect(await restoreRootfs(engine, { path: archive, ref: restored, labels })).toBe(true);
      const [made, back] = await Promise.all([baseRef('bookworm'), restored].map((r) => docker.getImage(r).inspect()));
      // The same bytes imported twice are the same layer: the archive holds exactly the bootstrapped tree.
      expect(back?.RootFS.Layers).toEqual(made?.RootFS.Layers);
      expect(back?.Config.Labels).toMatchObject(labels);
      await docker.getImage(restored).remove({ force: true });

      // Without zstd there is nothing to restore with: no image, and the archive stays for a machine that has it.
      const path = process.env['PATH'];
      process.env['PATH'] = '/nonexistent';
      try {
        expect(await restoreRootfs(engine, { path: archive, ref: restored, labels })).toBe(false);
      } finally {
        process.env['PATH'] = path;
      }
      expect((await stat(archive)).isFile()).toBe(true);

      const damaged = join(await tempOut(), 'damaged.tar.zst');
      const bytes = await readFile(archive);
      const middle = Math.floor(bytes.length / 2);
      bytes[middle] = (bytes[middle] ?? 0) ^ 0xff;
      await writeFile(damaged, bytes);
      expect(await restoreRootfs(engine, { path: damaged, ref: restored, labels })).toBe(false);
      expect(await stat(damaged).catch(() => undefined)).toBeUndefined();
      const left = await docker.listImages({ filters: { reference: ['kfarm/test-rootfs'] } });
      expect(left.flatMap((i) => i.RepoTags ?? [])).toEqual([]);
    } finally {
      await docker
        .getImage(restored)
        .remove({ force: true })
        .catch(() => undefined);
    }
    expect(await kfarmContainers(docker)).toEqual([]);
  });

  it('the host set-up script is idempotent: a second run installs and starts nothing', async () => {
    const run = await execa('bash', [join(repoRoot, 'scripts/setup-host.sh')], { reject: false });
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).not.toMatch(/installing|starting dockerd/);
    expect(run.stdout).toMatch(/setup-host: ready \(engine /);
  });
});
