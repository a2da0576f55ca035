import { cp, readFile, readdir, writeFile } from 'node:fs/promises';
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

const debTemps = async () => (await readdir(tmpdir())).filter((name) => name.startsWith('kfarm-dkms-deb-'));

describe('kfarm build debian:<name> and <file>.deb: a distribution DKMS package', () => {
  it("Debian's own iptables-netflow-dkms builds on the default matrix, each release its own package", async () => {
    const out = await tempOut();
    const run = await runKfarm(['build', 'debian:iptables-netflow-dkms', '-o', out]);
    expect(run.exitCode, run.stderr).toBe(0);
    // Each release's package, with its Depends as build dependencies: its PRE_BUILD (./configure) needs
    // pkg-config and the iptables headers (bookworm says pkg-config, trixie pkgconf).
    expect(run.stderr).toMatch(
      /debian:iptables-netflow-dkms: bookworm: iptables-netflow-dkms 2\.6-[^,]*, ipt-netflow-2\.6, build dependencies from its Depends: .*libxtables-dev pkg-config/,
    );
    expect(run.stderr).toMatch(
      /debian:iptables-netflow-dkms: trixie: iptables-netflow-dkms 2\.6-[^,]*, ipt-netflow-2\.6, build dependencies from its Depends: .*libxtables-dev pkgconf/,
    );
    for (const t of [bookworm, trixie]) {
      const ko = join(out, `dkms/ipt-netflow/2.6/${t.kernel}/x86_64/module/ipt_NETFLOW.ko`);
      expect((await readModinfo(ko)).get('vermagic')?.[0]).toMatch(new RegExp(`^${t.kernel.replace(/\+/g, '\\+')} `));
    }
    // The unpacked trees were temp dirs of the run, gone with it.
    expect(await debTemps()).toEqual([]);

    // The same package as a file is the same source: its result is the cached one.
    const found = await lookupPackages('trixie', ['iptables-netflow-dkms', 'dkms'], {
      components: ['main', 'contrib'],
    });
    const [deb, dkms] = await new PackageCache(join(cacheRoot(), 'packages')).fetchAll([
      found.get('iptables-netflow-dkms'),
      found.get('dkms'),
    ] as NonNullable<ReturnType<typeof found.get>>[]);
    const fromFile = await runKfarm(['build', deb as string, '-t', trixie.id, '-o', await tempOut(), '--json']);
    expect(fromFile.exitCode, fromFile.stderr).toBe(0);
    expect((JSON.parse(fromFile.stdout) as { targets: { status: string }[] }).targets[0]?.status).toBe('cached');
    expect(await debTemps()).toEqual([]);

    // A .deb without a DKMS tree (dkms itself) and a file that is no .deb: exit 2, one line naming the file.
    const notDkms = await runKfarm(['build', dkms as string, '-t', trixie.id, '-o', await tempOut()]);
    expect(notDkms.exitCode).toBe(2);
    expect(notDkms.stderr).toMatch(
      /expected one \/usr\/src\/<module>-<version>\/dkms\.conf, found none: is it a DKMS package\?/,
    );
    const fake = join(await tempOut(), 'fake.deb');
    await writeFile(fake, 'not an archive\n');
    const notDeb = await runKfarm(['build', fake, '-t', trixie.id, '-o', await tempOut()]);
    expect(notDeb.exitCode).toBe(2);
    expect(notDeb.stderr.trim()).toMatch(/fake\.deb: not a Debian package \(no ar header\)$/);
  });

  it('releases whose packages differ in version build each their own; packages and reports say which', async () => {
    const out = await tempOut();
    const run = await runKfarm(['build', 'debian:v4l2loopback-dkms', '-o', out, '--package', 'deb', '--json']);
    expect(run.exitCode, run.stderr).toBe(0);
    const built = JSON.parse(run.stdout) as {
      version: string;
      targets: { release: string; kernel: string; version?: string; packages: string[] }[];
    };
    const versionOf = (release: string) => {
      const t = built.targets.find((x) => x.release === release);
      return t?.version ?? built.version;
    };
    // bookworm ships v4l2loopback 0.12, trixie 0.15: each target built (and packaged) its release's.
    expect(versionOf('bookworm')).toMatch(/^0\.12\./);
    expect(versionOf('trixie')).toMatch(/^0\.15\./);
    for (const t of built.targets) {
      const version = versionOf(t.release);
      await readModinfo(join(out, `dkms/v4l2loopback/${version}/${t.kernel}/x86_64/module/v4l2loopback.ko`));
      expect(t.packages).toContain(`packages/v4l2loopback-modules-${t.kernel}_${version}-1_amd64.deb`);
    }
    const summary = await readFile(join(out, 'summary.md'), 'utf8');
    expect(summary).toContain(`v4l2loopback ${versionOf('bookworm')}, ${versionOf('trixie')}`);
  });

  it('an unknown package or a malformed name is exit 2, one line, nothing written', async () => {
    const dir = await tempOut();
    const out = join(dir, 'out');
    const missing = await runKfarm(['build', 'debian:no-such-thing-dkms', '-t', trixie.id, '-o', out]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr.trim()).toMatch(
      /^kfarm: debian:no-such-thing-dkms: no package no-such-thing-dkms in debian\/trixie \(trixie, trixie-updates, trixie-security\)$/,
    );
    const bad = await runKfarm(['build', 'debian:Not_A_Name', '-t', trixie.id, '-o', out]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.trim()).toMatch(/debian:Not_A_Name: expected debian:<package>, e\.g\. debian:zfs-dkms$/);
    expect(await readdir(dir)).toEqual([]);
    expect(await debTemps()).toEqual([]);
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

  it('--with-module builds the named module first for the same kernel; the module links against its symbols', async () => {
    const out = await tempOut();
    const run = await runKfarm([
      'build',
      fixture('needs-module'),
      '--with-module',
      fixture('kf-base'),
      '-t',
      bookworm.id,
      '-o',
      out,
    ]);
    expect(run.exitCode, run.stderr).toBe(0);
    const tree = join(out, `dkms/kf_needs/1.0/${bookworm.kernel}/x86_64`);
    const modinfo = await readModinfo(join(tree, 'module/kf_needs.ko'));
    // modpost writes depends= only when the symbol came from kf_base's Module.symvers.
    expect(modinfo.get('depends')).toEqual(['kf_base']);
    expect(modinfo.get('vermagic')?.[0]).toMatch(new RegExp(`^${bookworm.kernel.replace(/[.+]/g, '\\$&')} `));
    const log = await readFile(join(tree, 'log/make.log'), 'utf8');
    expect(log).toContain('kfarm: --with-module kf_base/2.0, built and installed before the module');
  });

  it('a --with-module that fails to build fails the target, naming it', async () => {
    const broken = join(await tempOut(), 'kf-base');
    await cp(fixture('kf-base'), broken, { recursive: true });
    await writeFile(join(broken, 'kf_base.c'), 'this is not C;\n');
    const out = await tempOut();
    const run = await runKfarm([
      'build',
      fixture('needs-module'),
      '--with-module',
      broken,
      '-t',
      bookworm.id,
      '-o',
      out,
    ]);
    expect(run.exitCode, run.stderr).toBe(1);
    const [target] = (await report(out)).targets;
    expect(target?.status).toBe('failed');
    expect(target?.error).toMatch(/^--with-module kf_base\/2\.0: /);
  });

  it('a --with-module that is not a module tree is exit 2 naming the flag, before any build', async () => {
    const out = await tempOut();
    const missing = join(out, 'nope');
    const run = await runKfarm([
      'build',
      fixture('needs-module'),
      '--with-module',
      missing,
      '-t',
      bookworm.id,
      '-o',
      out,
    ]);
    expect(run.exitCode).toBe(2);
    expect(run.stderr.trim().split('\n').at(-1)).toBe(
      `kfarm: --with-module ${missing}: no such directory (expected a DKMS module source tree)`,
    );
  });
});
