import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import { Parser, type ReadEntry } from 'tar';
import { describe, expect, it } from 'vitest';
import {
  binariesOnlyDkmsConf,
  dkmsTarball,
  dkmsTarballName,
  sourceTreeEntries,
} from '../../src/package/dkms-tarball.js';
import {
  buildDeb,
  debFileName,
  debPackageName,
  debVersion,
  maintainerFromEnv,
  rfc2822,
} from '../../src/package/deb.js';
import { rpmFileName, rpmName, rpmSpec, rpmVersion } from '../../src/package/rpm.js';
import type { KernelBuild } from '../../src/package/types.js';

const epoch = 1700000000;
const build: KernelBuild = {
  targetId: 'debian/trixie/6.12.117+deb13-amd64',
  module: 'kf_two',
  version: '2.0',
  release: 'trixie',
  kernel: '6.12.117+deb13-amd64',
  arch: 'x86_64',
  modules: [
    { name: 'kf_alpha.ko', data: Buffer.alloc(3000, 1) },
    { name: 'kf_beta.ko', data: Buffer.alloc(1025, 2) },
  ],
  symvers: Buffer.from('0x12345678\tkf_sym\t/var/lib/dkms/kf_two/2.0/build/kf_alpha\tEXPORT_SYMBOL\t\n'),
  licenses: ['GPL'],
  descriptions: ['two modules'],
  authors: ['kfarm'],
};

async function tarMembers(
  archive: Buffer,
): Promise<Map<string, { type: string; mode: number; mtime: number; data: Buffer }>> {
  const members = new Map<string, { type: string; mode: number; mtime: number; data: Buffer }>();
  const parser = new Parser({ strict: true });
  parser.on('entry', (entry: ReadEntry) => {
    const chunks: Buffer[] = [];
    entry.on('data', (c: Buffer) => chunks.push(c));
    entry.on('end', () =>
      members.set(entry.path, {
        type: entry.type,
        mode: entry.mode ?? -1,
        mtime: Math.floor((entry.mtime?.getTime() ?? 0) / 1000),
        data: Buffer.concat(chunks),
      }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
    parser.end(archive);
  });
  return members;
}

describe('DKMS tarball', () => {
  it('has the mktarball layout for one kernel, binaries-only by default', async () => {
    expect(dkmsTarballName(build)).toBe('kf_two-2.0-kernel6.12.117+deb13-amd64-x86_64.dkms.tar.gz');
    const members = await tarMembers(gunzipSync(dkmsTarball(build, { epoch })));
    const tree = './dkms_main_tree/6.12.117+deb13-amd64/x86_64';
    expect([...members.keys()]).toEqual([
      './',
      './dkms_binaries_only/',
      './dkms_binaries_only/PACKAGE_NAME',
      './dkms_binaries_only/PACKAGE_VERSION',
      './dkms_binaries_only/dkms.conf',
      './dkms_main_tree/',
      './dkms_main_tree/6.12.117+deb13-amd64/',
      `${tree}/`,
      `${tree}/log/`,
      `${tree}/module/`,
      `${tree}/module/Module.symvers`,
      `${tree}/module/kf_alpha.ko`,
      `${tree}/module/kf_beta.ko`,
      './dkms_main_tree/dkms_dbversion',
    ]);
    expect(members.get('./dkms_main_tree/dkms_dbversion')?.data.toString()).toBe('2.0.0\n');
    expect(members.get('./dkms_binaries_only/PACKAGE_NAME')?.data.toString()).toBe('kf_two\n');
    expect(members.get('./dkms_binaries_only/PACKAGE_VERSION')?.data.toString()).toBe('2.0\n');
    expect(members.get(`${tree}/module/kf_beta.ko`)?.data.equals(Buffer.alloc(1025, 2))).toBe(true);
    for (const m of members.values()) {
      expect(m.mtime).toBe(epoch);
      expect(m.mode).toBe(m.type === 'Directory' ? 0o755 : 0o644);
    }
  });

  it('the binaries-only dkms.conf is bash that DKMS reads as one record per .ko', async () => {
    const conf = binariesOnlyDkmsConf('kf_two', '2.0', ['kf_beta.ko', 'kf_alpha.ko']);
    const dir = await mkdtemp(join(tmpdir(), 'kfarm-conf-'));
    await writeFile(join(dir, 'dkms.conf'), conf);
    const { stdout } = await execa('bash', [
      '-c',
      'cd / && . "$1" && printf "%s|" "$PACKAGE_NAME" "$PACKAGE_VERSION" ' +
        '"${BUILT_MODULE_NAME[@]}" "${DEST_MODULE_NAME[@]}" "${DEST_MODULE_LOCATION[@]}"',
      'x',
      join(dir, 'dkms.conf'),
    ]);
    expect(stdout).toBe('kf_two|2.0|kf_alpha|kf_beta|kf_alpha|kf_beta|/updates/dkms|/updates/dkms|');
    expect(binariesOnlyDkmsConf("it's", '1.0', [])).toContain(`PACKAGE_NAME='it'\\''s'`);
  });

  it('--with-source: dkms_source_tree/ with normalised modes, .git left out, no binaries-only part', async () => {
    const src = await mkdtemp(join(tmpdir(), 'kfarm-src-'));
    await mkdir(join(src, '.git'));
    await mkdir(join(src, 'scripts'));
    await writeFile(join(src, '.git', 'HEAD'), 'x');
    await writeFile(join(src, 'dkms.conf'), 'PACKAGE_NAME=kf_two\n', { mode: 0o600 });
    await writeFile(join(src, 'scripts', 'run.sh'), '#!/bin/sh\n', { mode: 0o700 });
    await symlink('scripts/run.sh', join(src, 'run'));
    const members = await tarMembers(gunzipSync(dkmsTarball(build, { epoch, source: await sourceTreeEntries(src) })));
    expect([...members.keys()].filter((k) => !k.startsWith('./dkms_main_tree'))).toEqual([
      './',
      './dkms_source_tree/',
      './dkms_source_tree/dkms.conf',
      './dkms_source_tree/run',
      './dkms_source_tree/scripts/',
      './dkms_source_tree/scripts/run.sh',
    ]);
    expect(members.get('./dkms_source_tree/dkms.conf')?.mode).toBe(0o644);
    expect(members.get('./dkms_source_tree/scripts/run.sh')?.mode).toBe(0o755);
    expect(members.get('./dkms_source_tree/run')?.type).toBe('SymbolicLink');

    await symlink('/etc/passwd', join(src, 'escape'));
    await expect(sourceTreeEntries(src)).rejects.toThrow(/escape is a symbolic link leaving the source tree/);
  });
});

describe('.deb', () => {
  it('names: <module>-modules-<kver> with _ → -, version <v>-1', () => {
    expect(debPackageName('kf_two', '6.12.117+deb13-amd64')).toBe('kf-two-modules-6.12.117+deb13-amd64');
    expect(debPackageName('My_Mod', '6.1.0-56-amd64')).toBe('my-mod-modules-6.1.0-56-amd64');
    expect(debVersion('2.0')).toBe('2.0-1');
    expect(debVersion('1.2-3')).toBe('1.2-3-1');
    expect(debVersion('v1.0_rc1')).toBe('0~v1.0.rc1-1');
    expect(debFileName(build)).toBe('kf-two-modules-6.12.117+deb13-amd64_2.0-1_amd64.deb');
    expect(rfc2822(1700000000)).toBe('Tue, 14 Nov 2023 22:13:20 +0000');
    expect(maintainerFromEnv({ DEBFULLNAME: 'A B', DEBEMAIL: 'a@b.org' })).toBe('A B <a@b.org>');
    expect(maintainerFromEnv({})).toBe('kfarm <kfarm@example.org>');
  });

  it('dpkg-deb reads it: control fields, scripts, md5sums of every file, data paths and modes', async () => {
    const deb = buildDeb(build, { epoch, moduleDir: '/usr/lib/modules', maintainer: 'T <t@example.org>' });
    const dir = await mkdtemp(join(tmpdir(), 'kfarm-deb-'));
    const file = join(dir, 'x.deb');
    await writeFile(file, deb);
    const field = async (name: string) => (await execa('dpkg-deb', ['-f', file, name])).stdout;
    expect(await field('Package')).toBe('kf-two-modules-6.12.117+deb13-amd64');
    expect(await field('Version')).toBe('2.0-1');
    expect(await field('Architecture')).toBe('amd64');
    expect(await field('Depends')).toBe('linux-image-6.12.117+deb13-amd64 | linux-image-6.12.117+deb13-amd64-unsigned');
    expect(await field('Provides')).toBe('kf-two-modules');
    // dirs count 1 each (./, usr, usr/lib, modules, kver, updates, dkms, share, doc, pkg = 10) + ⌈3000/1024⌉ + ⌈1025/1024⌉ + docs.
    expect(Number(await field('Installed-Size'))).toBeGreaterThanOrEqual(10 + 3 + 2 + 2);
    const { stdout: listing } = await execa('dpkg-deb', ['-c', file]);
    expect(listing).toMatch(
      /^-rw-r--r-- root\/root +3000 2023-11-14 22:13 \.\/usr\/lib\/modules\/6\.12\.117\+deb13-amd64\/updates\/dkms\/kf_alpha\.ko$/m,
    );
    expect(listing).toMatch(/\.\/usr\/share\/doc\/kf-two-modules-6\.12\.117\+deb13-amd64\/changelog\.Debian\.gz$/m);
    expect(listing).toMatch(/\.\/usr\/share\/doc\/kf-two-modules-6\.12\.117\+deb13-amd64\/copyright$/m);
    expect(listing).not.toMatch(/^d.* \.\/lib\//m);

    await execa('dpkg-deb', ['-e', file, join(dir, 'control')]);
    await execa('dpkg-deb', ['-x', file, join(dir, 'root')]);
    const postinst = await readFile(join(dir, 'control', 'postinst'), 'utf8');
    expect(postinst).toMatch(/^#!\/bin\/sh\nset -e\n/);
    expect(postinst).toContain(
      'if [ -e /boot/System.map-6.12.117+deb13-amd64 ]; then\n' +
        '      depmod -a -F /boot/System.map-6.12.117+deb13-amd64 6.12.117+deb13-amd64',
    );
    expect(postinst).not.toMatch(/depmod -a\s*(\|\||$)/m);
    await execa('sh', ['-n', join(dir, 'control', 'postinst')]);
    await execa('sh', ['-n', join(dir, 'control', 'postrm')]);
    const md5sums = await readFile(join(dir, 'control', 'md5sums'), 'utf8');
    const lines = md5sums.trim().split('\n');
    expect(lines).toHaveLength(4);
    for (const line of lines) {
      const [sum, path] = line.split('  ');
      const data = await readFile(join(dir, 'root', path ?? ''));
      expect(createHash('md5').update(data).digest('hex'), path).toBe(sum);
    }
    const changelog = gunzipSync(
      await readFile(join(dir, 'root/usr/share/doc/kf-two-modules-6.12.117+deb13-amd64/changelog.Debian.gz')),
    ).toString();
    expect(changelog).toMatch(/^kf-two-modules-6\.12\.117\+deb13-amd64 \(2\.0-1\) unstable; urgency=medium\n/);
    expect(changelog).toContain(' -- T <t@example.org>  Tue, 14 Nov 2023 22:13:20 +0000\n');
    for (const line of changelog.split('\n')) expect(line.length).toBeLessThanOrEqual(80);
    // Same inputs, same bytes.
    expect(buildDeb(build, { epoch, moduleDir: '/usr/lib/modules', maintainer: 'T <t@example.org>' }).equals(deb)).toBe(
      true,
    );
  });
});

describe('.rpm spec', () => {
  it('names, versions, files, scripts, no kernel requirement, reproducibility settings', () => {
    expect(rpmName('kf_two', '6.12.117+deb13-amd64')).toBe('kmod-kf_two-6.12.117+deb13-amd64');
    expect(rpmName('m', '6.1.0~rc1-amd64')).toBe('kmod-m-6.1.0_rc1-amd64');
    expect(rpmVersion('1.2-3')).toBe('1.2_3');
    expect(rpmFileName(build)).toBe('kmod-kf_two-6.12.117+deb13-amd64-2.0-1.x86_64.rpm');
    const spec = rpmSpec(build, { moduleDir: '/usr/lib/modules' });
    expect(spec).toMatch(/^Name: kmod-kf_two-6\.12\.117\+deb13-amd64$/m);
    expect(spec).toMatch(/^Supplements: linux-image-6\.12\.117\+deb13-amd64$/m);
    expect(spec).not.toMatch(/^Requires:/m);
    expect(spec).toMatch(/^%define __os_install_post %\{nil\}$/m);
    expect(spec).toMatch(/^%define use_source_date_epoch_as_buildtime 1$/m);
    expect(spec).toMatch(/^%define clamp_mtime_to_source_date_epoch 1$/m);
    expect(spec).toMatch(/^%define _binary_payload w9\.gzdio$/m);
    expect(spec).toContain('%attr(0644,root,root) /usr/lib/modules/6.12.117+deb13-amd64/extra/kf_two/kf_beta.ko');
    expect(spec).toMatch(/^%post -p <lua>$/m);
    expect(spec).toMatch(/^%postun -p <lua>$/m);
    const map = '/boot/System.map-6.12.117+deb13-amd64';
    expect(spec).toContain(`if posix.access("${map}") then`);
    expect(spec).toContain(`pcall(rpm.execute, "/sbin/depmod", "-a", "-F", "${map}", "6.12.117+deb13-amd64")`);
    expect(() => rpmSpec({ ...build, kernel: '6.1; rm -rf /' }, { moduleDir: '/lib/modules' })).toThrow(
      /unsafe kernel release/,
    );
  });
});

describe('checkPackageOptions', () => {
  const usage = async (promise: Promise<unknown>) => {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((error as { code?: string }).code, String(error)).toBe('KFARM_USAGE');
    return (error as Error).message;
  };

  it('checks formats, --with-source, --maintainer and SOURCE_DATE_EPOCH without touching anything', async () => {
    const { checkPackageOptions } = await import('../../src/package/package.js');
    expect(await usage(checkPackageOptions({ formats: [] }))).toMatch(
      /^--format: give one or more of dkms, deb, rpm, dkms-deb$/,
    );
    expect(await usage(checkPackageOptions({ formats: ['zip' as 'deb'] }))).toBe(
      '--format "zip": expected one or more of dkms, deb, rpm, dkms-deb',
    );
    const empty = await mkdtemp(join(tmpdir(), 'kfarm-nosrc-'));
    expect(await usage(checkPackageOptions({ formats: ['dkms'], withSource: empty }))).toBe(
      `--with-source ${empty}: no dkms.conf in it`,
    );
    expect(await usage(checkPackageOptions({ formats: ['dkms'], withSource: join(empty, 'x') }))).toBe(
      `--with-source ${join(empty, 'x')}: not a directory`,
    );
    expect(await usage(checkPackageOptions({ formats: ['deb'], maintainer: 'nobody' }))).toBe(
      '--maintainer "nobody": expected "Name <email>"',
    );
    expect(await usage(checkPackageOptions({ formats: ['deb'], env: { SOURCE_DATE_EPOCH: '12abc' } }))).toMatch(
      /^SOURCE_DATE_EPOCH="12abc"/,
    );
    expect(
      await checkPackageOptions({
        formats: ['deb', 'deb', 'dkms'],
        maintainer: 'A B <a@b.org>',
        env: { SOURCE_DATE_EPOCH: '5' },
      }),
    ).toEqual({ formats: ['deb', 'dkms'] });
  });
});
