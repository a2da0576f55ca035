import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import type Docker from 'dockerode';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageCommand } from '../../src/cli/package-command.js';
import { connectEngine, type Engine, type EngineContainer, type VolumeMount } from '../../src/engine/index.js';
import { newSession } from '../../src/engine/labels.js';
import { isKfarmError } from '../../src/model/errors.js';
import { runFarm } from '../../src/farm/run.js';
import type { Target } from '../../src/model/result.js';
import { ImageStore } from '../../src/images/image-store.js';
import { ToolImages, type ToolKind } from '../../src/images/tool-images.js';
import { tarArchive } from '../../src/package/archive.js';
import { packageOutput } from '../../src/package/package.js';
import { parseModuleSignature } from '../../src/package/sign.js';
import { releaseSources, resolveTargets } from '../../src/plan/resolve.js';
import type { FarmReport } from '../../src/model/report.js';
import { example, repoRoot, requireEngine, tempOut } from '../helpers/engine.js';
import { cmsVerifyExit, makeSigningKey } from '../helpers/signing.js';

/**
 * Packages built for real kernels, checked with the real tools of each target release: its dkms (bookworm
 * 3.0.10, trixie 3.2.x), dpkg with the real linux-image-<kver> installed, lintian, rpm, openssl, modinfo.
 */

const EPOCH = 1700000000;
let docker: Docker;
let engine: Engine;
let tools: ToolImages;
let images: ImageStore;
let targets: Target[];
let keyDir: string;
let first: { out: string; report: FarmReport };
let second: { out: string; report: FarmReport };

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

async function buildAndPackage(formats: ('dkms' | 'deb' | 'rpm')[] = ['dkms', 'deb', 'rpm']) {
  const out = await tempOut('kfarm-pkg-');
  const run = await runFarm({
    source: example('hello'),
    out,
    targets,
    sources: releaseSources,
    cache: false,
    sourceDateEpoch: EPOCH,
    engine,
  });
  const report = await packageOutput(out, run.report, {
    formats,
    signKey: join(keyDir, 'signing.key'),
    signCert: join(keyDir, 'signing.der'),
    sourceDateEpoch: EPOCH,
    engine,
  });
  return { out, report };
}

/** Runs a bash script in a container; resolves with the exit code and the interleaved output. */
async function sh(
  container: EngineContainer,
  script: string,
  env: Record<string, string> = {},
): Promise<{ code: number; out: string }> {
  let out = '';
  const sink = new PassThrough();
  sink.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  const code = await container.exec(['bash', '-c', script], { env, stdout: sink, stderr: sink });
  return { code, out };
}

async function put(container: EngineContainer, dir: string, files: Record<string, Buffer>): Promise<void> {
  await container.putArchive(
    tarArchive(
      Object.entries(files).map(([path, data]) => ({ path, type: 'file', mode: 0o644, data })),
      EPOCH,
    ),
    dir,
  );
}

async function withContainer<T>(
  image: string,
  network: 'none' | 'bridge',
  work: (c: EngineContainer) => Promise<T>,
  volumes: VolumeMount[] = [],
): Promise<T> {
  const container = await engine.start({
    image,
    cmd: ['sleep', '1800'],
    network,
    hardened: false,
    volumes,
    labels: { 'kfarm.role': 'package-test' },
  });
  try {
    return await work(container);
  } finally {
    await container.remove();
  }
}

/** A container as a builder of `target` is: its image, its kernel's headers volumes and build links. */
async function withHeaders<T>(target: Target, work: (c: EngineContainer) => Promise<T>): Promise<T> {
  const env = await images.headers(target);
  return withContainer(
    env.image,
    'none',
    async (c) => {
      for (const link of env.headers.links)
        await sh(c, `mkdir -p ${dirname(link.path)} && ln -s ${link.target} ${link.path}`);
      return work(c);
    },
    env.headers.mounts,
  );
}

const tool = (release: string, kind: ToolKind) => tools.get(release, kind);
const pkgs = (report: FarmReport, release: string, suffix: string) =>
  (report.targets.find((t) => t.release === release)?.packages ?? []).filter((p) => p.endsWith(suffix));
const one = (report: FarmReport, release: string, suffix: string): string => {
  const list = pkgs(report, release, suffix);
  expect(list, `${release} ${suffix}`).toHaveLength(1);
  return list[0] as string;
};
const target = (release: string) => targets.find((t) => t.release === release) as Target;

beforeAll(async () => {
  docker = await requireEngine();
  engine = await connectEngine(newSession(`package-test-${process.pid}`));
  const all = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  targets = ['bookworm', 'trixie'].map((r) => all.find((t) => t.release === r) as Target);
  expect(targets.map((t) => t?.kernel)).toEqual([
    expect.stringMatching(/^6\.1\.0-\d+-amd64$/),
    expect.stringMatching(/^6\.12\.\d+\+deb13-amd64$/),
  ]);
  const logDir = await tempOut('kfarm-pkg-logs-');
  images = new ImageStore(engine, { logDir, sources: releaseSources });
  tools = new ToolImages(engine, images, { logDir });
  keyDir = await mkdtemp(join(tmpdir(), 'kfarm-pkg-key-'));
  // The subject has an O= too: modinfo's signer is the CN alone.
  await makeSigningKey(keyDir, 'signing', 'kfarm test signer/O=kfarm', { der: true });
  await makeSigningKey(keyDir, 'other', 'someone else');
  first = await buildAndPackage();
});

afterAll(async () => {
  expect(await sessionContainers()).toEqual([]);
  await engine?.removeSessionContainers();
});

describe('kfarm package: exact bytes', () => {
  it('two builds and packagings from clean with the same SOURCE_DATE_EPOCH give identical .ko, tarballs, .deb and .rpm', async () => {
    second = await buildAndPackage();
    const hashes = async (out: string) => {
      const result: Record<string, string> = {};
      const walk = async (dir: string, rel: string) => {
        for (const entry of await readdir(dir, { withFileTypes: true })) {
          const path = rel ? `${rel}/${entry.name}` : entry.name;
          if (entry.isDirectory()) await walk(join(dir, entry.name), path);
          else if (/\.(ko|dkms\.tar\.gz|deb|rpm)$/.test(entry.name))
            result[path] = sha256(await readFile(join(dir, entry.name)));
        }
      };
      await walk(join(out, 'dkms'), 'dkms');
      await walk(join(out, 'packages'), 'packages');
      return result;
    };
    const a = await hashes(first.out);
    const b = await hashes(second.out);
    expect(Object.keys(a).filter((k) => k.endsWith('.ko'))).toHaveLength(2);
    expect(Object.keys(a).filter((k) => k.endsWith('.dkms.tar.gz'))).toHaveLength(2);
    expect(Object.keys(a).filter((k) => k.endsWith('.deb'))).toHaveLength(2);
    expect(Object.keys(a).filter((k) => k.endsWith('.rpm'))).toHaveLength(2);
    expect(b).toEqual(a);
    // The uncompressed tarball too (gzip bytes can differ between zlib versions; the tar must not).
    const tarball = Object.keys(a).find((k) => k.endsWith('.dkms.tar.gz')) as string;
    expect(sha256(gunzipSync(await readFile(join(first.out, tarball))))).toBe(
      sha256(gunzipSync(await readFile(join(second.out, tarball)))),
    );
    // report.json records them per target.
    const written = JSON.parse(await readFile(join(first.out, 'report.json'), 'utf8')) as FarmReport;
    expect(written).toEqual(first.report);
    for (const t of written.targets) {
      expect(t.packages?.map((p) => p.replace(t.kernel, 'K'))).toEqual([
        'packages/hello-1.0-kernelK-x86_64.dkms.tar.gz',
        'packages/hello-modules-K_1.0-1_amd64.deb',
        'packages/kmod-hello-K-1.0-1.x86_64.rpm',
      ]);
    }
    expect((await readdir(join(first.out, 'packages'))).sort()).toEqual(
      written.targets
        .flatMap((t) => t.packages ?? [])
        .map((p) => p.slice('packages/'.length))
        .sort(),
    );
  });
});

describe('kfarm package: DKMS tarballs with the distribution dkms', () => {
  for (const release of ['bookworm', 'trixie']) {
    it(
      `${release}: ldtarball needs the /usr/src stub for binaries-only, then dkms status shows built ` +
        'and dkms install -k puts the module in /lib/modules/<kver>/updates/dkms',
      async () => {
        const kver = target(release).kernel;
        const file = one(first.report, release, '.dkms.tar.gz');
        const tarball = await readFile(join(first.out, file));
        const ko = await readFile(join(first.out, 'dkms/hello/1.0', kver, 'x86_64/module/hello.ko'));
        await withContainer(await tool(release, 'dkms'), 'none', async (c) => {
          await put(c, '/tmp', { 'hello.dkms.tar.gz': tarball });
          const version = await sh(c, "dpkg-query -W -f '${Version}' dkms");
          expect(version.out).toMatch(release === 'bookworm' ? /^3\.0\.10-/ : /^3\.[1-9]/);

          // Without /usr/src/hello-1.0 a binaries-only tarball does not load cleanly: dkms exits 1 (3.0.10 still
          // lists the module as built; 3.2.x does not list it at all).
          const bare = await sh(c, 'dkms ldtarball /tmp/hello.dkms.tar.gz');
          expect(bare.code, bare.out).toBe(1);
          const bareStatus = await sh(c, 'dkms status');
          if (release === 'trixie') expect(bareStatus.out).not.toContain('hello/1.0');
          expect((await sh(c, 'rm -rf /var/lib/dkms/hello')).code).toBe(0);

          // The stub: dkms_binaries_only/dkms.conf copied to /usr/src/hello-1.0/dkms.conf.
          const stub = await sh(
            c,
            'mkdir -p /usr/src/hello-1.0 && tar -xzOf /tmp/hello.dkms.tar.gz ./dkms_binaries_only/dkms.conf > /usr/src/hello-1.0/dkms.conf',
          );
          expect(stub.code, stub.out).toBe(0);
          const load = await sh(c, 'dkms ldtarball /tmp/hello.dkms.tar.gz');
          expect(load.code, load.out).toBe(0);
          const status = await sh(c, `dkms status -m hello -v 1.0 -k ${kver}`);
          expect(status.out.trim()).toBe(`hello/1.0, ${kver}, x86_64: built`);

          // dkms install only needs the kernel's module directory to exist (no headers, no kernel image).
          const install = await sh(c, `mkdir -p /lib/modules/${kver} && dkms install -k ${kver} hello/1.0`);
          expect(install.code, install.out).toBe(0);
          const installed = await sh(
            c,
            `sha256sum < /lib/modules/${kver}/updates/dkms/hello.ko; dkms status -m hello -v 1.0 -k ${kver}`,
          );
          const [hash, line] = installed.out.trim().split('\n');
          expect(hash?.split(' ')[0]).toBe(sha256(await signedKo(tarball, kver)));
          expect(line?.trim()).toMatch(new RegExp(`^hello/1\\.0, ${kver.replace(/[.+]/g, '\\$&')}, x86_64: installed`));
          // What was installed is the signed copy of the module built for this kernel.
          expect(parseModuleSignature(await signedKo(tarball, kver))?.module.equals(ko)).toBe(true);
        });
      },
    );
  }

  it('--with-source: the tarball carries the source tree (no stub needed) and loads as built in both releases', async () => {
    const out = await tempOut('kfarm-pkg-src-');
    await cp(second.out, out, { recursive: true });
    await rm(join(out, 'packages'), { recursive: true });
    const report = await packageOutput(out, second.report, {
      formats: ['dkms'],
      withSource: example('hello'),
      sourceDateEpoch: EPOCH,
    });
    for (const release of ['bookworm', 'trixie']) {
      const kver = target(release).kernel;
      const tarball = await readFile(join(out, one(report, release, '.dkms.tar.gz')));
      const names = await tarNames(tarball);
      expect(names).toContain('./dkms_source_tree/hello.c');
      expect(names).toContain('./dkms_source_tree/dkms.conf');
      expect(names.some((n) => n.startsWith('./dkms_binaries_only'))).toBe(false);
      await withContainer(await tool(release, 'dkms'), 'none', async (c) => {
        await put(c, '/tmp', { 'hello.dkms.tar.gz': tarball });
        const load = await sh(
          c,
          'dkms ldtarball /tmp/hello.dkms.tar.gz && cmp /usr/src/hello-1.0/hello.c /var/lib/dkms/hello/1.0/source/hello.c',
        );
        expect(load.code, load.out).toBe(0);
        expect((await sh(c, `dkms status -m hello -v 1.0 -k ${kver}`)).out.trim()).toBe(
          `hello/1.0, ${kver}, x86_64: built`,
        );
      });
    }
  });
});

describe('kfarm package: .deb with dpkg and lintian of the target release', () => {
  for (const release of ['bookworm', 'trixie']) {
    it(
      `${release}: lintian reports no error; dpkg -i with the real linux-image-<kver> installed; ` +
        'dpkg -L and dpkg --verify are clean; depmod ran for that kernel',
      async () => {
        const kver = target(release).kernel;
        const moddir = release === 'bookworm' ? '/lib/modules' : '/usr/lib/modules';
        const file = one(first.report, release, '.deb');
        const pkg = `hello-modules-${kver}`;
        await withContainer(await tool(release, 'lintian'), 'bridge', async (c) => {
          await put(c, '/tmp', { 'hello.deb': await readFile(join(first.out, file)) });
          const lint = await sh(
            c,
            'lintian --version; lintian --tag-display-limit 0 --display-info --pedantic /tmp/hello.deb',
          );
          expect(lint.out).toMatch(/^Lintian v2\.\d+/);
          expect(
            lint.out.split('\n').filter((l) => /^E: /.test(l)),
            lint.out,
          ).toEqual([]);
          expect(lint.out).not.toMatch(
            /aliased-location|no-copyright-file|changelog-file-missing|md5sum|control-file-has-bad-permissions|wrong-file-owner|ancient/,
          );

          // The dependency is real: without the kernel dpkg refuses to configure the package.
          const unmet = await sh(
            c,
            'dpkg -i /tmp/hello.deb; status=$?; dpkg -r hello-modules-' + kver + ' >/dev/null 2>&1; exit $status',
          );
          expect(unmet.code).not.toBe(0);
          expect(unmet.out).toContain(`depends on linux-image-${kver} | linux-image-${kver}-unsigned`);

          const kernel = await sh(
            c,
            `apt-get -q update >/dev/null && apt-get install -y -q --no-install-recommends linux-image-${kver} ` +
              '>/tmp/apt.log 2>&1 || { tail -5 /tmp/apt.log; exit 1; }; ls /boot',
            {
              DEBIAN_FRONTEND: 'noninteractive',
              INITRD: 'No',
            },
          );
          expect(kernel.code, kernel.out).toBe(0);
          expect(kernel.out).toContain(`System.map-${kver}`);

          const install = await sh(c, 'dpkg -i /tmp/hello.deb');
          expect(install.code, install.out).toBe(0);
          const listed = await sh(c, `dpkg -L ${pkg}`);
          expect(listed.out.split('\n')).toContain(`${moddir}/${kver}/updates/dkms/hello.ko`);
          expect(listed.out.split('\n')).toContain(`/usr/share/doc/${pkg}/copyright`);
          const verify = await sh(c, `dpkg --verify ${pkg}`);
          expect(verify).toEqual({ code: 0, out: '' });
          const state = await sh(
            c,
            `dpkg-query -W -f '\${Status} \${Version}' ${pkg}; echo; ` +
              `stat -c '%a %U:%G' ${moddir}/${kver}/updates/dkms/hello.ko; ` +
              `grep -c '^updates/dkms/hello.ko:' ${moddir}/${kver}/modules.dep`,
          );
          expect(state.out.split('\n').slice(0, 3)).toEqual(['install ok installed 1.0-1', '644 root:root', '1']);
          const removed = await sh(
            c,
            `dpkg -r ${pkg} && test ! -e ${moddir}/${kver}/updates/dkms/hello.ko && ! grep -q hello.ko ${moddir}/${kver}/modules.dep`,
          );
          expect(removed.code, removed.out).toBe(0);
        });
      },
    );
  }
});

describe('kfarm package: .rpm', () => {
  it('rpm -qpl, --requires/--provides/--supplements/--scripts, and rpm -i --root puts the files in place', async () => {
    await withContainer(await tool('trixie', 'rpm'), 'none', async (c) => {
      for (const release of ['bookworm', 'trixie']) {
        const kver = target(release).kernel;
        const moddir = release === 'bookworm' ? '/lib/modules' : '/usr/lib/modules';
        const file = one(first.report, release, '.rpm');
        expect(file).toBe(`packages/kmod-hello-${kver}-1.0-1.x86_64.rpm`);
        await put(c, '/tmp', { 'hello.rpm': await readFile(join(first.out, file)) });
        const q = async (args: string) => {
          const r = await sh(c, `rpm -qp ${args} /tmp/hello.rpm 2>/dev/null`);
          expect(r.code, r.out).toBe(0);
          return r.out.trim().split('\n');
        };
        expect(
          await q(
            '--qf "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE} %{BUILDTIME} %{BUILDHOST} %{PAYLOADCOMPRESSOR}\\n"',
          ),
        ).toEqual([`kmod-hello-${kver} 1.0 1 x86_64 GPL ${EPOCH} kfarm gzip`]);
        expect(await q('-l')).toEqual([`${moddir}/${kver}/extra/hello`, `${moddir}/${kver}/extra/hello/hello.ko`]);
        expect(
          await q('--qf "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEMTIMES} %{FILENAMES}\\n]"'),
        ).toEqual([
          `drwxr-xr-x root:root ${EPOCH} ${moddir}/${kver}/extra/hello`,
          `-rw-r--r-- root:root ${EPOCH} ${moddir}/${kver}/extra/hello/hello.ko`,
        ]);
        const requires = await q('--requires');
        // Lua scriptlets: the package requires nothing a dpkg system's RPM database lacks (not even /bin/sh).
        expect(requires.filter((r) => !r.startsWith('rpmlib('))).toEqual([]);
        expect(requires).toContain('rpmlib(BuiltinLuaScripts) <= 4.2.2-1');
        expect(requires.join('\n')).not.toMatch(/kernel|linux-image|modules\.order/);
        expect(await q('--provides')).toEqual(
          expect.arrayContaining(['hello-kmod = 1.0-1', 'kmod-hello = 1.0-1', `kmod-hello-${kver} = 1.0-1`]),
        );
        expect(await q('--supplements')).toEqual([`linux-image-${kver}`]);
        const scripts = (await q('--scripts')).join('\n');
        expect(scripts).toMatch(/^postinstall scriptlet \(using <lua>\):/m);
        expect(scripts).toMatch(/^postuninstall scriptlet \(using <lua>\):/m);
        expect(
          scripts.split(`rpm.execute, "/sbin/depmod", "-a", "-F", "/boot/System.map-${kver}", "${kver}")`),
        ).toHaveLength(3);

        const root = `/tmp/root-${release}`;
        const install = await sh(
          c,
          `mkdir -p ${root} && rpm -i --root ${root} --noscripts /tmp/hello.rpm 2>&1 | grep -v 'private mounts' ; ` +
            `rpm --root ${root} -qa; ` +
            `stat -c '%a %s' ${root}${moddir}/${kver}/extra/hello/hello.ko; ` +
            `sha256sum < ${root}${moddir}/${kver}/extra/hello/hello.ko`,
        );
        const [name, modeSize, hash] = install.out.trim().split('\n');
        expect(name).toBe(`kmod-hello-${kver}-1.0-1.x86_64`);
        const signed = await signedKo(
          await readFile(join(first.out, one(first.report, release, '.dkms.tar.gz'))),
          kver,
        );
        expect(modeSize).toBe(`644 ${signed.length}`);
        expect(hash?.split(' ')[0]).toBe(sha256(signed));
      }
    });
  });
});

describe('kfarm package: signing', () => {
  it(
    'every packaged module carries a signature that verifies against the certificate; ' +
      'modinfo in the target builder image shows the signer and hash; sign-file makes the same bytes',
    async () => {
      for (const release of ['bookworm', 'trixie']) {
        const kver = target(release).kernel;
        const unsigned = await readFile(join(first.out, 'dkms/hello/1.0', kver, 'x86_64/module/hello.ko'));
        expect(parseModuleSignature(unsigned)).toBeUndefined();
        const signed = await signedKo(
          await readFile(join(first.out, one(first.report, release, '.dkms.tar.gz'))),
          kver,
        );
        const sig = parseModuleSignature(signed);
        expect(sig?.idType).toBe(2);
        expect(sig?.module.equals(unsigned)).toBe(true);
        const verified = await cmsVerifyExit(
          sig?.signature ?? Buffer.alloc(0),
          sig?.module ?? Buffer.alloc(0),
          join(keyDir, 'signing.pem'),
        );
        expect(verified).toBe(0);

        await withHeaders(target(release), async (c) => {
          await put(c, '/tmp', {
            'signed.ko': signed,
            'unsigned.ko': unsigned,
            'signing.key': await readFile(join(keyDir, 'signing.key')),
            'signing.pem': await readFile(join(keyDir, 'signing.pem')),
          });
          const info = await sh(
            c,
            'modinfo -F signer /tmp/signed.ko; modinfo -F sig_hashalgo /tmp/signed.ko; modinfo -F sig_id /tmp/signed.ko',
          );
          expect(info.out.trim().split('\n')).toEqual(['kfarm test signer', 'sha256', 'PKCS#7']);
          // The kernel's own sign-file (from linux-kbuild) on the unsigned module gives exactly the same bytes.
          const signFile = await sh(
            c,
            `hash=$(sed -n 's/^CONFIG_MODULE_SIG_HASH="\\(.*\\)"/\\1/p' /lib/modules/${kver}/build/.config); ` +
              '/usr/lib/linux-kbuild-*/scripts/sign-file "$hash" /tmp/signing.key /tmp/signing.pem /tmp/unsigned.ko && ' +
              'cmp /tmp/unsigned.ko /tmp/signed.ko && echo same',
          );
          expect(signFile.out.trim(), signFile.out).toBe('same');
        });
      }
    },
  );

  it(
    'a wrong key/cert pair, an unreadable key or a file that is not a key fails with one usage line ' +
      'before anything is written',
    async () => {
      const out = await tempOut('kfarm-pkg-badkey-');
      await cp(first.out, out, { recursive: true });
      await rm(join(out, 'packages'), { recursive: true });
      const before = await readFile(join(out, 'report.json'));
      const cases: [string, string, RegExp][] = [
        [
          join(keyDir, 'signing.key'),
          join(keyDir, 'other.pem'),
          /^--sign-cert .*other\.pem: its public key does not match the private key in --sign-key .*signing\.key$/,
        ],
        [
          join(keyDir, 'nope.key'),
          join(keyDir, 'signing.pem'),
          /^--sign-key .*nope\.key: cannot read it \(no such file\)$/,
        ],
        [join(keyDir, 'signing.pem'), join(keyDir, 'signing.pem'), /^--sign-key .*signing\.pem: not a private key/],
      ];
      for (const [signKey, signCert, message] of cases) {
        const error = await packageOutput(out, first.report, {
          formats: ['dkms', 'deb', 'rpm'],
          signKey,
          signCert,
          sourceDateEpoch: EPOCH,
          engine,
        }).catch((e: unknown) => e);
        expect(isKfarmError(error, 'KFARM_USAGE'), String(error)).toBe(true);
        expect((error as Error).message).toMatch(message);
        expect(await readdir(out)).toEqual(expect.not.arrayContaining(['packages']));
        expect((await readFile(join(out, 'report.json'))).equals(before)).toBe(true);
      }
    },
  );
});

describe('kfarm package: failures leave nothing behind', () => {
  it('an interrupted packaging run leaves no partial files and the previous packages and report.json as they were', async () => {
    const out = await tempOut('kfarm-pkg-abort-');
    await cp(second.out, out, { recursive: true });
    const before = await snapshot(join(out, 'packages'));
    const report = await readFile(join(out, 'report.json'));
    const controller = new AbortController();
    // Stop once the first .deb has been written to the temporary directory, before the .rpm step.
    const error = await packageOutput(out, second.report, {
      formats: ['dkms', 'deb', 'rpm'],
      sourceDateEpoch: EPOCH + 1,
      engine,
      signal: controller.signal,
      log: (line) => {
        if (line.endsWith('.deb')) queueMicrotask(() => controller.abort(new Error('stop')));
      },
    }).catch((e: unknown) => e);
    expect((error as Error).message).toBe('stop');
    expect(await snapshot(join(out, 'packages'))).toEqual(before);
    expect((await readdir(join(out, 'packages'))).filter((n) => n.startsWith('.kfarm-tmp'))).toEqual([]);
    expect((await readFile(join(out, 'report.json'))).equals(report)).toBe(true);
    expect(await sessionContainers()).toEqual([]);
  });

  it('a tampered DKMS tree (a module replaced by a symlink to /etc/passwd) is refused and nothing is written', async () => {
    const out = await tempOut('kfarm-pkg-tamper-');
    await cp(second.out, out, { recursive: true });
    await rm(join(out, 'packages'), { recursive: true });
    const ko = join(out, 'dkms/hello/1.0', target('trixie').kernel, 'x86_64/module/hello.ko');
    await rm(ko);
    await symlink('/etc/passwd', ko);
    const error = await packageOutput(out, second.report, { formats: ['dkms'], sourceDateEpoch: EPOCH }).catch(
      (e: unknown) => e,
    );
    expect(isKfarmError(error, 'KFARM_OUTPUT_UNSAFE'), String(error)).toBe(true);
    expect((error as Error).message).toMatch(/hello\.ko: cannot open it as a regular file \(ELOOP\)/);
    expect(await readdir(out)).not.toContain('packages');
  });
});

describe('kfarm package: the command', () => {
  const run = async (args: string[], env: Record<string, string | undefined> = {}) => {
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k];
    let code = -1;
    const command = packageCommand(new AbortController().signal, (c) => (code = c))
      .exitOverride()
      .configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
    const stdout = process.stdout.write.bind(process.stdout);
    process.stdout.write = () => true;
    try {
      await command.parseAsync(args, { from: 'user' });
      return { code, error: undefined as unknown };
    } catch (error) {
      return { code, error };
    } finally {
      process.stdout.write = stdout;
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  };

  it('packages the formats asked for, dated by SOURCE_DATE_EPOCH from the environment; bad input is a usage error', async () => {
    const out = await tempOut('kfarm-pkg-cli-');
    await cp(second.out, out, { recursive: true });
    await rm(join(out, 'packages'), { recursive: true });
    const ok = await run([out, '--format', 'dkms,deb'], { SOURCE_DATE_EPOCH: String(EPOCH) });
    expect(ok.error).toBeUndefined();
    expect(ok.code).toBe(0);
    const written = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as FarmReport;
    expect(written.targets.map((t) => t.packages?.length)).toEqual([2, 2]);
    // Unsigned this time, same epoch: the unsigned tarball differs from the signed one only in the module bytes.
    const tarball = one(written, 'trixie', '.dkms.tar.gz');
    expect(
      parseModuleSignature(await signedKo(await readFile(join(out, tarball)), target('trixie').kernel)),
    ).toBeUndefined();

    const badEpoch = await run([out, '--format', 'dkms'], { SOURCE_DATE_EPOCH: 'yesterday' });
    expect(isKfarmError(badEpoch.error, 'KFARM_USAGE')).toBe(true);
    expect((badEpoch.error as Error).message).toBe(
      'SOURCE_DATE_EPOCH="yesterday": expected a whole number of seconds since 1970-01-01 UTC',
    );

    const halfKey = await run([out, '--sign-key', join(keyDir, 'signing.key')], { SOURCE_DATE_EPOCH: String(EPOCH) });
    expect((halfKey.error as Error).message).toBe('--sign-key needs --sign-cert (the certificate of that key)');
    expect((halfKey.error as { exitCode: number }).exitCode).toBe(2);

    const badFormat = await run([out, '--format', 'dkms,zip']);
    expect((badFormat.error as { code?: string }).code).toBe('commander.invalidArgument');

    const noReport = await run([join(out, 'nope')]);
    expect((noReport.error as Error).message).toMatch(
      /nope\/report\.json: not found \(run `kfarm build --out` into this directory first\)/,
    );
  });
});

/** Containers of this test's engine session (other kfarm runs may share the engine). */
async function sessionContainers(): Promise<string[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [`kfarm.session=${engine.session.id}`] } });
  return list.map((c) => `${c.Id.slice(0, 12)} ${c.Labels['kfarm.role'] ?? ''}`);
}

async function tarNames(tarball: Buffer): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-tarnames-'));
  await writeFile(join(dir, 't.tar.gz'), tarball);
  return (await execa('tar', ['-tzf', join(dir, 't.tar.gz')])).stdout.split('\n');
}

/** The module inside a DKMS tarball (the packaged copy, signed when signing was asked for). */
async function signedKo(tarball: Buffer, kver: string): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-ko-'));
  await writeFile(join(dir, 't.tar.gz'), tarball);
  const { stdout } = await execa(
    'tar',
    ['-xzOf', join(dir, 't.tar.gz'), `./dkms_main_tree/${kver}/x86_64/module/hello.ko`],
    { encoding: 'buffer', stripFinalNewline: false },
  );
  return Buffer.from(stdout);
}

async function snapshot(dir: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) result[name] = sha256(await readFile(join(dir, name)));
  return result;
}
