import { readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { beforeAll, describe, expect, it } from 'vitest';
import { readModinfo } from '../../src/dkms/modinfo.js';
import { lookupPackages } from '../../src/plan/debian-lookup.js';
import { PackageCache } from '../../src/images/package-cache.js';
import { cacheRoot } from '../../src/util/cache-dir.js';
import type { Target } from '../../src/model/result.js';
import { fixture, requireEngine, runKfarm, supportedTarget, tempOut } from '../helpers/engine.js';

/**
 * Build dependencies: a module whose PRE_BUILD (./configure) needs pkg-config and zlib's development files,
 * like iptables-netflow-dkms needs pkgconf and libxtables-dev. The packages come from the release's archive
 * into a layer of the builder image, prepared once; the build itself still has no network.
 */
let docker: Docker;
let bookworm: Target;
let trixie: Target;

beforeAll(async () => {
  docker = await requireEngine();
  [bookworm, trixie] = await Promise.all([supportedTarget('bookworm'), supportedTarget('trixie')]);
});

const source = fixture('builddeps');
const report = async (out: string) =>
  JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
    targets: Array<{ id: string; status: string; error?: string }>;
  };

describe('--build-deps and build-deps: in matrix files', () => {
  it('without its build dependencies the module fails in its own configure, with its own message', async () => {
    const out = await tempOut();
    const run = await runKfarm(['build', source, '-t', bookworm.id, '-o', out]);
    expect(run.exitCode, run.stderr).toBe(1);
    const [target] = (await report(out)).targets;
    expect(target?.status).toBe('failed');
    expect(target?.error).toMatch(/the pre_build script configure --with-zlib exited 1/);
    const log = await readFile(join(out, `dkms/kf_builddeps/1.0/${bookworm.kernel}/x86_64/log/make.log`), 'utf8');
    expect(log).toContain('configure: error: pkg-config not found');
  });

  it('--build-deps installs them into the builder once; the module builds against them on both releases', async () => {
    // A layer left by an earlier run would be reused: start from none, so the first run must prepare it.
    const old = await docker.listImages({ filters: { label: ['kfarm.role=deps'] } });
    for (const image of old) await docker.getImage(image.Id).remove({ force: true });
    const out = await tempOut();
    const args = ['build', source, '-t', bookworm.id, '-t', trixie.id, '--build-deps', 'pkgconf zlib1g-dev'];
    const run = await runKfarm([...args, '-o', out]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/build dependencies for debian\/bookworm: pkgconf zlib1g-dev/);
    for (const t of [bookworm, trixie]) {
      const ko = join(out, `dkms/kf_builddeps/1.0/${t.kernel}/x86_64/module/kf_builddeps.ko`);
      // The version pkg-config reported inside the builder: bookworm's zlib is 1.2.13, trixie's 1.3.
      expect((await readModinfo(ko)).get('kf_zlib')?.[0]).toMatch(t.release === 'bookworm' ? /^1\.2\./ : /^1\.3/);
    }
    const layers = await docker.listImages({ filters: { label: ['kfarm.role=deps'] } });
    expect(layers.length).toBeGreaterThanOrEqual(2);

    // Prepared once: a second run (no result cache) builds in the same layer without preparing it again.
    const again = await runKfarm([...args, '-o', await tempOut(), '--no-cache']);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/build dependencies for/);
  });

  it('a matrix file names them per release; an unknown package is exit 2 naming it and the release', async () => {
    const dir = await tempOut();
    const matrix = join(dir, 'matrix.yaml');
    await writeFile(
      matrix,
      'distro: debian\nbuild-deps: [pkgconf]\nreleases:\n  bookworm:\n    build-deps: zlib1g-dev no-such-package-kf\n',
    );
    const out = join(dir, 'out');
    const run = await runKfarm(['build', source, '-m', matrix, '-o', out]);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toMatch(
      /matrix\.yaml:5: build-deps: no package no-such-package-kf in debian\/bookworm \(bookworm, bookworm-updates, bookworm-security\)/,
    );
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(await readdir(dir)).toEqual(['matrix.yaml']);

    const flag = await runKfarm(['build', source, '-t', trixie.id, '--build-deps', 'Bad_Name', '-o', out]);
    expect(flag.exitCode).toBe(2);
    expect(flag.stderr).toMatch(/--build-deps: "Bad_Name" is not a package name/);
  });
});

describe('kfarm build <file>.deb: a distribution DKMS package', () => {
  it("Debian's own iptables-netflow-dkms builds on trixie, its Depends installed as build dependencies", async () => {
    const found = await lookupPackages('trixie', ['iptables-netflow-dkms', 'dkms']);
    const [deb, dkms] = await new PackageCache(join(cacheRoot(), 'packages')).fetchAll([
      found.get('iptables-netflow-dkms'),
      found.get('dkms'),
    ] as NonNullable<ReturnType<typeof found.get>>[]);
    const out = await tempOut();
    const run = await runKfarm(['build', deb as string, '-t', trixie.id, '-o', out]);
    expect(run.exitCode, run.stderr).toBe(0);
    // Its PRE_BUILD (./configure) needs pkg-config and the iptables headers: Depends: libxtables-dev, pkgconf.
    expect(run.stderr).toMatch(/build dependencies from its Depends: .*libxtables-dev pkgconf/);
    const ko = join(out, `dkms/ipt-netflow/2.6/${trixie.kernel}/x86_64/module/ipt_NETFLOW.ko`);
    expect((await readModinfo(ko)).get('vermagic')?.[0]).toMatch(
      new RegExp(`^${trixie.kernel.replace(/\+/g, '\\+')} `),
    );
    // The unpacked tree was a temp dir of the run, gone with it.
    expect((await readdir(tmpdir())).filter((name) => name.startsWith('kfarm-dkms-deb-'))).toEqual([]);

    // A .deb without a DKMS tree (dkms itself) and a file that is no .deb: exit 2, one line naming the file.
    const notDkms = await runKfarm(['build', dkms as string, '-t', trixie.id, '-o', await tempOut()]);
    expect(notDkms.exitCode).toBe(2);
    expect(notDkms.stderr).toMatch(
      /expected one \/usr\/src\/<module>-<version>\/dkms\.conf, found no: is it a DKMS package\?/,
    );
    const fake = join(await tempOut(), 'fake.deb');
    await writeFile(fake, 'not an archive\n');
    const notDeb = await runKfarm(['build', fake, '-t', trixie.id, '-o', await tempOut()]);
    expect(notDeb.exitCode).toBe(2);
    expect(notDeb.stderr.trim()).toMatch(/fake\.deb: not a Debian package \(no ar header\)$/);
  });
});

describe('--dkms-conf-override', () => {
  it('a missing or unparsable override file is exit 2 naming it, before any build', async () => {
    const dir = await tempOut();
    const missing = await runKfarm(['build', source, '-t', trixie.id, '--dkms-conf-override', join(dir, 'nope.conf')]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr.trim()).toMatch(/nope\.conf: no such file$/);
    const bad = join(dir, 'bad.conf');
    await writeFile(bad, 'MAKE[0]="make\nif then\n');
    const broken = await runKfarm(['build', source, '-t', trixie.id, '--dkms-conf-override', bad]);
    expect(broken.exitCode).toBe(2);
    expect(broken.stderr.trim()).toMatch(/bad\.conf: line \d+: /);
  });
});

describe('BUILD_DEPENDS', () => {
  it("a module naming another DKMS module fails per target with DKMS's own reason, not a compiler error", async () => {
    const out = await tempOut();
    const run = await runKfarm(['build', fixture('needs-module'), '-t', bookworm.id, '-o', out]);
    expect(run.exitCode, run.stderr).toBe(1);
    const [target] = (await report(out)).targets;
    expect(target?.status).toBe('failed');
    expect(target?.error).toMatch(
      new RegExp(
        `^Aborting build of module kf_needs/1.0 for kernel ${bookworm.kernel} \\(x86_64\\) due to missing BUILD_DEPENDS: kf_base`,
      ),
    );
  });
});
