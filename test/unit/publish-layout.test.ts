import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { buildDkmsDeb, dkmsDebFileName, dkmsDebVersion } from '../../src/package/dkms-deb.js';
import { buildDeb } from '../../src/package/deb.js';
import type { KernelBuild } from '../../src/package/types.js';
import { compareDebianVersions, kernelVersionKey } from '../../src/util/debian-version.js';
import { asKernelPackage, metaVersion, planDistribution, type DebFacts } from '../../src/publish/apt-layout.js';
import { buildMetapackage, metaFileName } from '../../src/publish/metapackage.js';
import { parseSecretKeys } from '../../src/publish/signer.js';

const facts = (kernel: string, version = '1.0-1', module = 'hello'): DebFacts => ({
  file: `${module}-modules-${kernel}_${version}_amd64.deb`,
  package: `${module}-modules-${kernel}`,
  version,
  depends: `linux-image-${kernel} | linux-image-${kernel}-unsigned`,
  provides: `${module}-modules`,
  section: 'kernel',
  maintainer: 'kfarm <kfarm@example.org>',
  epoch: 1700000000,
});

const build = (kernel: string, release = 'bookworm'): KernelBuild => ({
  targetId: `debian/${release}/${kernel}`,
  module: 'hello',
  version: '1.0',
  release,
  kernel,
  arch: 'x86_64',
  modules: [{ name: 'hello.ko', data: Buffer.alloc(2000, 7) }],
  licenses: ['GPL'],
  descriptions: ['hello'],
  authors: [],
});

describe('kernel version keys', () => {
  it('drop the flavour and sort like the kernels, across ABI bumps and series', () => {
    expect(kernelVersionKey('6.1.0-57-amd64')).toBe('6.1.0.57');
    expect(kernelVersionKey('6.12.118+deb13-cloud-amd64')).toBe('6.12.118+deb13');
    expect(kernelVersionKey('6.1.0-0.deb11.48-rt-amd64')).toBe('6.1.0.0.deb11.48');
    const kernels = ['6.1.0-9-amd64', '6.1.0-57-amd64', '6.12.9+deb13-amd64', '6.12.118+deb13-amd64'];
    const byKey = [...kernels].sort((a, b) => compareDebianVersions(kernelVersionKey(a), kernelVersionKey(b)));
    expect(byKey).toEqual(kernels);
  });
});

describe('planDistribution', () => {
  it('makes one metapackage per module and flavour, following the newest kernel and package version', () => {
    const plan = planDistribution([
      facts('6.1.0-56-amd64'),
      facts('6.1.0-57-amd64'),
      facts('6.1.0-57-amd64', '1.1-1'),
      facts('6.1.0-57-cloud-amd64'),
      facts('6.1.0-55-amd64', '1.0-1', 'other'),
      { ...facts('6.1.0-50-amd64'), package: 'hello-modules-amd64', section: 'metapackages', file: 'old-meta.deb' },
      { ...facts('x'), file: 'hello-dkms_1.0-1_amd64.deb', package: 'hello-dkms', depends: 'dkms' },
    ]);
    expect(plan.metas.map((m) => `${m.package} ${m.version} -> ${m.target.package} ${m.target.version}`)).toEqual([
      'hello-modules-amd64 6.1.0.57+1.1-1 -> hello-modules-6.1.0-57-amd64 1.1-1',
      'hello-modules-cloud-amd64 6.1.0.57+1.0-1 -> hello-modules-6.1.0-57-cloud-amd64 1.0-1',
      'other-modules-amd64 6.1.0.55+1.0-1 -> other-modules-6.1.0-55-amd64 1.0-1',
    ]);
    expect(plan.keep.map((f) => f.file)).not.toContain('old-meta.deb');
    expect(plan.keep.map((f) => f.file)).toContain('hello-dkms_1.0-1_amd64.deb');
    expect(plan.pruned).toEqual([]);
  });

  it('keeps the newest N kernels per module and flavour with every version of a kept kernel', () => {
    const plan = planDistribution(
      [
        facts('6.1.0-55-amd64'),
        facts('6.1.0-56-amd64'),
        facts('6.1.0-57-amd64'),
        facts('6.1.0-57-amd64', '1.1-1'),
        facts('6.1.0-55-cloud-amd64'),
      ],
      2,
    );
    expect(plan.pruned.map((p) => p.file)).toEqual(['hello-modules-6.1.0-55-amd64_1.0-1_amd64.deb']);
    expect(plan.keep.map((p) => p.file)).toContain('hello-modules-6.1.0-55-cloud-amd64_1.0-1_amd64.deb');
    expect(plan.keep).toHaveLength(4);
  });

  it('the metapackage version rises with a newer kernel and with a newer build of the same kernel', () => {
    const v = (kernel: string, version?: string) => metaVersion(asKernelPackage(facts(kernel, version))!);
    expect(compareDebianVersions(v('6.1.0-57-amd64'), v('6.1.0-56-amd64'))).toBe(1);
    expect(compareDebianVersions(v('6.1.0-57-amd64', '1.1-1'), v('6.1.0-57-amd64'))).toBe(1);
    expect(compareDebianVersions(v('6.12.118+deb13-amd64'), v('6.12.9+deb13-amd64'))).toBe(1);
  });
});

describe('generated packages', () => {
  it('metapackage and -dkms .deb are valid for dpkg-deb, with the fields apt needs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kfarm-meta-'));
    const meta = planDistribution([facts('6.1.0-57-amd64')]).metas[0]!;
    const metaPath = join(dir, metaFileName(meta));
    await writeFile(metaPath, buildMetapackage(meta, 'bookworm'));
    const metaInfo = (await execa('dpkg-deb', ['--field', metaPath])).stdout;
    expect(metaInfo).toContain('Depends: hello-modules-6.1.0-57-amd64 (= 1.0-1)');
    expect(metaInfo).toContain('Section: metapackages');
    expect(buildMetapackage(meta, 'bookworm')).toEqual(buildMetapackage(meta, 'bookworm'));

    const builds = [build('6.1.0-56-amd64'), build('6.12.118+deb13-amd64', 'trixie')];
    expect(dkmsDebVersion(builds)).toBe('1.0-1+6.12.118+deb13');
    const dkmsPath = join(dir, dkmsDebFileName(builds));
    const source = [
      { path: 'dkms.conf', type: 'file' as const, mode: 0o644, data: Buffer.from('PACKAGE_NAME=hello\n') },
    ];
    await writeFile(
      dkmsPath,
      buildDkmsDeb(builds, source, { epoch: 1700000000, moduleDir: '', maintainer: 'a <b@c.d>' }),
    );
    const info = (await execa('dpkg-deb', ['--field', dkmsPath])).stdout;
    expect(info).toMatch(/^Depends: dkms$/m);
    expect(info).toMatch(/^Provides: hello-modules$/m);
    expect(info).toMatch(/^Conflicts: hello-modules$/m);
    const files = (await execa('dpkg-deb', ['--contents', dkmsPath])).stdout;
    expect(files).toContain('./usr/src/hello-1.0/dkms.conf');
    expect(files).toContain('./usr/share/hello-dkms/hello-1.0-kernel6.1.0-56-amd64-x86_64.dkms.tar.gz');
    expect(files).toContain('./usr/share/hello-dkms/hello-1.0-kernel6.12.118+deb13-amd64-x86_64.dkms.tar.gz');
    const postinst = (await execa('dpkg-deb', ['--info', dkmsPath, 'postinst'])).stdout;
    expect(postinst).toContain('/usr/lib/dkms/common.postinst "$DKMS_NAME" "$DKMS_VERSION"');
    expect((await execa('sh', ['-n'], { input: postinst, reject: false })).exitCode).toBe(0);

    // The per-kernel package declares the conflict from its side too.
    const deb = join(dir, 'k.deb');
    await writeFile(
      deb,
      buildDeb(build('6.1.0-56-amd64'), { epoch: 1700000000, moduleDir: '/lib/modules', maintainer: 'a <b@c.d>' }),
    );
    expect((await execa('dpkg-deb', ['--field', deb, 'Conflicts'])).stdout).toBe('hello-dkms');
  });

  it('a -dkms package of several module versions is refused', () => {
    const builds = [build('6.1.0-56-amd64'), { ...build('6.1.0-57-amd64'), version: '1.1' }];
    expect(() => buildDkmsDeb(builds, [], { epoch: 1, moduleDir: '', maintainer: 'a <b@c.d>' })).toThrow(
      /different versions \(1\.0, 1\.1\)/,
    );
  });
});

describe('parseSecretKeys', () => {
  it('reads fingerprint, creation time, user ID and signing capability of each primary key', () => {
    const colons = [
      'sec:u:3072:1:05EF5D25F06FA38A:1765000000:::u:::scESC:::+:::23::0:',
      'fpr:::::::::6BB1C817596024B5971B0D8205EF5D25F06FA38A:',
      'grp:::::::::AAAA:',
      'uid:u::::1765000000::HASH::kfarm test <t@example.org>::::::::::0:',
      'sec:u:255:22:1111111111111111:1765000001:::u:::eE:::+:::ed25519::0:',
      'fpr:::::::::2222222222222222222222222222222222222222:',
      'uid:u::::1765000001::HASH::enc only\\x3a key::::::::::0:',
    ].join('\n');
    expect(parseSecretKeys(colons)).toEqual([
      {
        fingerprint: '6BB1C817596024B5971B0D8205EF5D25F06FA38A',
        created: 1765000000,
        userId: 'kfarm test <t@example.org>',
        canSign: true,
      },
      {
        fingerprint: '2222222222222222222222222222222222222222',
        created: 1765000001,
        userId: 'enc only: key',
        canSign: false,
      },
    ]);
  });
});

describe('asKernelPackage', () => {
  it('takes only names kfarm would write: a control file cannot steer a metapackage out of the pool', () => {
    expect(asKernelPackage(facts('6.1.0-57-amd64'))?.kernel).toBe('6.1.0-57-amd64');
    const evil = '6.1.0-57-amd64/../../../../tmp/x';
    expect(asKernelPackage({ ...facts('x'), depends: `linux-image-${evil} | linux-image-${evil}-unsigned` })).toBe(
      undefined,
    );
    expect(asKernelPackage({ ...facts('6.1.0-57-amd64'), version: '1.0-1/../x' })).toBe(undefined);
    expect(asKernelPackage({ ...facts('6.1.0-57-amd64'), maintainer: 'a <b@c.d>\nDepends: evil' })).toBe(undefined);
    expect(
      planDistribution([{ ...facts('x'), depends: `linux-image-${evil} | linux-image-${evil}-unsigned` }]).metas,
    ).toEqual([]);
  });
});
