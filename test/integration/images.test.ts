import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
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
  it('headers asked for twice at once are unpacked once into read-only volumes, recorded, then reused', async () => {
    const docker = await requireEngine();
    // The oldest bookworm kernel, which no other test builds for: this test owns its own and -common volumes.
    const index = await discoverReleaseIndex('bookworm', { flavours: ['amd64'], includeBackports: false });
    const target = index.kernels
      .filter((k) => k.kernel !== index.defaults.amd64 && k.kernel.startsWith('6.1.0-'))
      .at(0);
    if (!target?.debs) throw new Error('no old bookworm kernel');
    const engine = await connectEngine(newSession('images-test'));
    const logDir = await tempOut();
    const ref = headersRef('bookworm', target.kernel);
    const owned = async () => {
      // Its own cache dir: what this makes (kbuild's volume too, if missing) must not be in the test's package cache.
      const probe = new ImageStore(engine, { logDir: join(await tempOut(), 'logs'), sources: releaseSources });
      const env = await probe.headers(target);
      // A fill's container is removed in the background, and a volume in use cannot be removed.
      await engine.settle(30_000);
      return env.headers.mounts.slice(0, 2).map((m) => m.volume);
    };
    for (const name of await owned()) {
      await engine.removeVolume(`${name}.ok`);
      await engine.removeVolume(name);
    }

    const prepared: string[] = [];
    const first = new ImageStore(engine, {
      logDir,
      sources: releaseSources,
      events: { onPrepare: (r) => prepared.push(r) },
    });
    // A second store stands for a second kfarm process: only the lock in the shared directory keeps them apart.
    const other = new ImageStore(engine, {
      logDir,
      sources: releaseSources,
      events: { onPrepare: (r) => prepared.push(r) },
    });
    const [a, b, c] = await Promise.all([first.headers(target), first.headers(target), other.headers(target)]);
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    // Whichever store took the lock first unpacked; the other found the volumes ready.
    expect(prepared.filter((r) => r === ref)).toHaveLength(1);
    expect(a.image).toBe(baseRef('bookworm'));
    const abi = target.kernel.replace(/-amd64$/, '');
    expect(a.headers.mounts.map((m) => [m.target, m.readOnly])).toEqual([
      [`/usr/src/linux-headers-${target.kernel}`, true],
      [`/usr/src/linux-headers-${abi}-common`, true],
      ['/usr/lib/linux-kbuild-6.1', true],
    ]);
    expect(a.headers.links).toEqual([
      { path: `/lib/modules/${target.kernel}/build`, target: `/usr/src/linux-headers-${target.kernel}` },
      { path: `/lib/modules/${target.kernel}/source`, target: `/usr/src/linux-headers-${abi}-common` },
    ]);
    expect(a.headers.moduleDir).toBe('/lib/modules');
    expect(a.headers.sigHash).toBe('sha256');
    // Each volume is named after its package's SHA-256, and counts only with its marker.
    for (const [i, mount] of a.headers.mounts.entries()) {
      expect(mount.volume).toContain((target.debs[i]?.sha256 ?? '').slice(0, 24));
      expect((await engine.volume(`${mount.volume}.ok`))?.labels['kfarm.fact.mount']).toBe(mount.target);
    }
    // The two .debs whose volumes were removed were downloaded into the package cache, under their SHA-256;
    // kbuild's volume was there, so its .deb was not fetched at all.
    const cached = await readdir(join(logDir, '..', 'packages'));
    const names = target.debs.map((file) => basename(first.packagePath(file)));
    expect(names.map((name) => cached.includes(name))).toEqual([true, true, false]);

    // Mounted read-only as a builder does: kbuild's Makefile is there, other architectures' arch/ is not.
    const mounts = a.headers.mounts.map((m) => ({
      Type: 'volume' as const,
      Source: m.volume,
      Target: m.target,
      ReadOnly: true,
    }));
    const check = await execa(
      'docker',
      [
        'run',
        '--rm',
        '--network',
        'none',
        ...mounts.flatMap((m) => ['--mount', `type=volume,src=${m.Source},dst=${m.Target},readonly`]),
        a.image,
        'sh',
        '-c',
        `test -f /usr/src/linux-headers-${target.kernel}/Makefile && test -x /usr/lib/linux-kbuild-6.1/scripts/mod/modpost && ` +
          `test -d /usr/src/linux-headers-${abi}-common/arch/x86 && ! test -e /usr/src/linux-headers-${abi}-common/arch/arm64 && ` +
          `! touch /usr/src/linux-headers-${target.kernel}/x 2>/dev/null && echo ok`,
      ],
      { reject: false },
    );
    expect(check.stdout, check.stderr).toBe('ok');

    prepared.length = 0;
    const second = new ImageStore(engine, {
      logDir,
      sources: releaseSources,
      events: { onPrepare: (r) => prepared.push(r) },
    });
    expect(await second.headers(target)).toEqual(a);
    expect(prepared).toEqual([]);
    expect(await engine.settle(30_000)).toBe(0);
    expect(await kfarmContainers(docker)).toEqual([]);
  });

  it('a headers package the archive republished under the same version is another volume, not the stale one', async () => {
    await requireEngine();
    const index = await discoverReleaseIndex('bookworm', { flavours: ['amd64'], includeBackports: false });
    const target = index.kernels.filter((k) => k.kernel.startsWith('6.1.0-')).at(0);
    const kbuild = target?.debs?.at(-1);
    if (!target?.debs || !kbuild) throw new Error('no bookworm kernel with packages');
    const engine = await connectEngine(newSession('images-republish-test'));
    const logDir = join(await tempOut(), 'logs');
    const store = () => new ImageStore(engine, { logDir, sources: releaseSources });
    const before = await store().headers(target);

    // Rebuilt with the same name and version, as a binNMU-less rebuild in the archive would be: other bytes.
    const work = await tempOut();
    const original = await store().fetchPackages([kbuild]);
    await execa('dpkg-deb', ['-R', original[0] as string, join(work, 'tree')]);
    await execa('dpkg-deb', ['--root-owner-group', '-Zgzip', '-b', join(work, 'tree'), join(work, 'rebuilt.deb')]);
    const body = await readFile(join(work, 'rebuilt.deb'));
    const server = await serve(body);
    try {
      const url = `${server.url}/${basename(new URL(kbuild.url).pathname)}`;
      const sha256 = createHash('sha256').update(body).digest('hex');
      const republished = {
        ...target,
        debs: [...target.debs.slice(0, 2), { ...kbuild, url, sha256, size: body.length }],
      };
      const after = await store().headers(republished);
      expect(after.id).not.toBe(before.id);
      expect(after.headers.mounts.slice(0, 2)).toEqual(before.headers.mounts.slice(0, 2));
      expect(after.headers.mounts[2]?.volume).not.toBe(before.headers.mounts[2]?.volume);
      expect(after.headers.mounts[2]?.volume).toContain(sha256.slice(0, 24));
      expect(await readdir(join(logDir, '..', 'packages'))).toContain(`${sha256.slice(0, 16)}_${basename(url)}`);
      await engine.settle(30_000);
      await engine.removeVolume(`${after.headers.mounts[2]?.volume}.ok`);
      await engine.removeVolume(after.headers.mounts[2]?.volume ?? '');
    } finally {
      server.close();
      await engine.settle(30_000);
    }
  });

  it('a failed unpacking names its log, keeps it, and leaves no volume that counts', async () => {
    const docker = await requireEngine();
    const engine = await connectEngine(newSession('images-fail-test'));
    const logDir = join(await tempOut(), 'logs');
    const store = new ImageStore(engine, { logDir, sources: releaseSources });
    // A real .deb that is no headers package: it has no /usr/src/<dir> to mount.
    const work = await tempOut();
    await mkdir(join(work, 'tree/DEBIAN'), { recursive: true });
    await mkdir(join(work, 'tree/usr/share/kfarm-none'), { recursive: true });
    await writeFile(
      join(work, 'tree/DEBIAN/control'),
      'Package: kfarm-none\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n',
    );
    await execa('dpkg-deb', ['--root-owner-group', '-b', join(work, 'tree'), join(work, 'none.deb')]);
    const body = await readFile(join(work, 'none.deb'));
    const server = await serve(body);
    const sha256 = createHash('sha256').update(body).digest('hex');
    const deb = {
      package: 'kfarm-none',
      version: '1',
      url: `${server.url}/kfarm-none_1_all.deb`,
      sha256,
      size: body.length,
    };
    const spec = {
      distro: 'debian' as const,
      release: 'bookworm',
      kernel: '0.0.0-0-kfarm-none',
      headersPackage: 'linux-headers-0.0.0-0-kfarm-none',
      headersVersion: '0.0.0-0',
      suite: 'bookworm',
      backports: false,
      debs: [deb],
    };
    try {
      const error = await store.headers(spec).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      const log = /\(log: ([^)]+)\)/.exec(error?.message ?? '')?.[1];
      expect(error?.message).toMatch(
        /^preparing kfarm\/debian-bookworm:0\.0\.0-0-kfarm-none failed: unpacking [0-9a-f]{16}_kfarm-none_1_all\.deb exited 1 \(log: .*\): kfarm: [0-9a-f]{16}_kfarm-none_1_all\.deb has not exactly one \/usr\/src\/<dir> or \/usr\/lib\/linux-kbuild-<v> directory: none$/,
      );
      expect(log?.startsWith(logDir)).toBe(true);
      expect(await readFile(log as string, 'utf8')).toMatch(/has not exactly one/);
      const volume = (await engine.volumes({ 'kfarm.role': 'headers-files' })).find((v) =>
        v.name.includes(sha256.slice(0, 24)),
      );
      expect(await engine.volume(`${volume?.name}.ok`)).toBeUndefined();
      expect(await engine.settle(30_000)).toBe(0);
      if (volume) await engine.removeVolume(volume.name);
      expect(await kfarmContainers(docker)).toEqual([]);
    } finally {
      server.close();
    }
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

/** Serves `body` at any path on 127.0.0.1, as a mirror would. */
async function serve(body: Buffer): Promise<{ url: string; close: () => void }> {
  const server = createServer((_req, res) => res.writeHead(200).end(body));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}
