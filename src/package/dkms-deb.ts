import { KfarmError } from '../model/errors.js';
import { arArchive, gzip, tarArchive, withParents, type TarEntry } from './archive.js';
import {
  changelogText,
  controlTar,
  debVersion,
  dkmsDebPackageName,
  installedSize,
  md5sums,
  modulesVirtualName,
  wrap,
  type DebOptions,
} from './deb.js';
import { compareDebianVersions, kernelVersionKey } from '../util/debian-version.js';
import { shellQuote } from '../util/shell.js';
import { dkmsTarball, dkmsTarballName } from './dkms-tarball.js';
import type { KernelBuild } from './types.js';

/**
 * The DKMS fallback package, `<module>-dkms`: the module's source in `/usr/src/<module>-<version>` (as every Debian
 * `*-dkms` package has it) and kfarm's prebuilt modules as one binaries-only DKMS tarball per built kernel in
 * `/usr/share/<module>-dkms/`.
 *
 * Its maintainer scripts are dh_dkms's (debhelper's `postinst-dkms`/`prerm-dkms`): the postinst runs DKMS's own
 * `/usr/lib/dkms/common.postinst`, which removes an older copy, `dkms add`s the source and builds and installs the
 * module for the running and newest kernels whose headers are installed. Then, for every kernel kfarm built that
 * has no build yet, it does what common.postinst does with a shipped tarball — `dkms ldtarball` — once per kernel
 * (DKMS 3.0 and 3.2 load only the first kernel of a tarball, and common.postinst loads one tarball), and `dkms
 * install`s it where that kernel is installed. A kernel installed later gets the prebuilt module from DKMS's own
 * kernel hook (`dkms autoinstall`, when dkms.conf has AUTOINSTALL), a kernel kfarm did not build is built from
 * source by DKMS. The prebuilt tarballs are loaded after common.postinst because it starts by removing everything
 * DKMS holds of this version.
 *
 * `Provides: <module>-modules` like the per-kernel packages, and `Conflicts: <module>-modules`: DKMS would install
 * its copy over a file dpkg owns, so one machine has either the per-kernel packages or this one.
 */

/**
 * `<module version>-1+<newest kernel>` (src/package/deb.ts, kernelVersionKey): a package with the binaries of a
 * newer kernel is a newer version, which `apt upgrade` brings and a repository can hold beside the older one.
 */
export function dkmsDebVersion(builds: Pick<KernelBuild, 'version' | 'kernel'>[]): string {
  const newest = [...builds].sort((a, b) => compareDebianVersions(b.kernel, a.kernel))[0];
  if (!newest) throw new KfarmError('KFARM_INTERNAL', 'a -dkms package needs at least one built kernel');
  return `${debVersion(newest.version)}+${kernelVersionKey(newest.kernel)}`;
}

export function dkmsDebFileName(builds: Pick<KernelBuild, 'module' | 'version' | 'kernel'>[]): string {
  return `${dkmsDebPackageName(builds[0]?.module ?? '')}_${dkmsDebVersion(builds)}_amd64.deb`;
}

export function buildDkmsDeb(builds: KernelBuild[], source: TarEntry[], options: DebOptions): Buffer {
  const first = builds[0];
  if (!first) throw new KfarmError('KFARM_INTERNAL', 'a -dkms package needs at least one built kernel');
  const versions = new Set(builds.map((b) => b.version));
  if (versions.size > 1)
    throw new KfarmError(
      'KFARM_USAGE',
      `--format dkms-deb: the targets built different versions (${[...versions].join(', ')}); package one at a time`,
    );
  const { module, version } = first;
  const pkg = dkmsDebPackageName(module);
  const doc = `usr/share/doc/${pkg}`;
  const share = `usr/share/${pkg}`;
  const files: TarEntry[] = [
    ...source.map((e): TarEntry => ({ ...e, path: `usr/src/${module}-${version}/${e.path}` })),
    ...builds.map((b): TarEntry => ({
      path: `${share}/${dkmsTarballName(b)}`,
      type: 'file',
      mode: 0o644,
      data: dkmsTarball(b, { epoch: options.epoch }),
    })),
    { path: `${doc}/copyright`, type: 'file', mode: 0o644, data: Buffer.from(copyright(first, options.epoch)) },
    {
      path: `${doc}/changelog.Debian.gz`,
      type: 'file',
      mode: 0o644,
      data: gzip(Buffer.from(changelogText(changelogLines(builds), options, pkg, dkmsDebVersion(builds)))),
    },
  ];
  const data = withParents(files);
  const control = controlText(builds, options, pkg, installedSize(data));
  const regular = files.filter((e) => e.type === 'file');
  const scripts = { postinst: postinst(module, version, pkg, builds), prerm: prerm(module, version) };
  return arArchive(
    [
      { name: 'debian-binary', data: Buffer.from('2.0\n') },
      { name: 'control.tar.gz', data: gzip(controlTar(control, md5sums(regular), scripts, options.epoch)) },
      { name: 'data.tar.gz', data: gzip(tarArchive(data, options.epoch)) },
    ],
    options.epoch,
  );
}

function changelogLines(builds: KernelBuild[]): string[] {
  const first = builds[0] as KernelBuild;
  const kernels = builds.map((b) => `${b.kernel} (Debian ${b.release})`).join(', ');
  return [`${first.module} ${first.version} DKMS source, with modules precompiled by kfarm for ${kernels}.`];
}

function copyright(build: KernelBuild, epoch: number): string {
  const license = build.licenses.length ? build.licenses.join(', ') : 'unknown (the modules declare no MODULE_LICENSE)';
  return `${build.module} ${build.version}: the ${build.module} DKMS source and kernel modules precompiled from it by kfarm.

Copyright (c) ${new Date(epoch * 1000).getUTCFullYear()} the authors of ${build.module}; see the source in
/usr/src/${build.module}-${build.version}.

License, as the modules declare it (MODULE_LICENSE): ${license}
`;
}

function controlText(builds: KernelBuild[], options: DebOptions, pkg: string, size: number): string {
  const first = builds[0] as KernelBuild;
  const virtual = modulesVirtualName(first.module);
  const kernels = builds.map((b) => b.kernel).join(', ');
  const described = first.descriptions.length ? `${first.descriptions.join('; ').replace(/\.?$/, '.')} ` : '';
  const long =
    `${described}The ${first.module} ${first.version} DKMS source, with modules kfarm built for ${kernels}: ` +
    'on those kernels DKMS installs the prebuilt modules (no compiler needed), on any other it builds them from ' +
    'source.';
  return [
    `Package: ${pkg}`,
    `Version: ${dkmsDebVersion(builds)}`,
    'Architecture: amd64',
    `Maintainer: ${options.maintainer}`,
    `Installed-Size: ${size}`,
    'Depends: dkms',
    `Provides: ${virtual}`,
    `Conflicts: ${virtual}`,
    'Section: kernel',
    'Priority: optional',
    `Description: ${first.module} ${first.version} DKMS source with prebuilt kernel modules`,
    ...wrap(long).map((line) => ` ${line}`),
  ].join('\n');
}

function postinst(module: string, version: string, pkg: string, builds: KernelBuild[]): string {
  const tarballs = builds.map((b) => `${b.kernel}:${b.arch}:${dkmsTarballName(b)}`).join(' \\\n  ');
  return `#!/bin/sh
set -e

# dh_dkms's postinst (debhelper's postinst-dkms): DKMS's own common.postinst.
DKMS_NAME=${shellQuote(module)}
DKMS_PACKAGE_NAME=${pkg}
DKMS_VERSION=${shellQuote(version)}
PREBUILT="${tarballs}"

# kfarm's prebuilt modules, loaded the way common.postinst loads a shipped tarball (dkms ldtarball), one kernel
# per tarball, and installed now where that kernel is (a kernel installed later gets them from DKMS's kernel hook).
# With the module already added, ldtarball loads the binaries and then fails to add it a second time (exit 3), so
# DKMS's status, not that exit code, says whether they loaded.
load_prebuilt() {
  for entry in $PREBUILT; do
    kernel=\${entry%%:*}
    rest=\${entry#*:}
    arch=\${rest%%:*}
    tarball=/usr/share/$DKMS_PACKAGE_NAME/\${rest#*:}
    if built "$kernel" "$arch"; then
      continue
    fi
    dkms ldtarball --force --archive "$tarball" >/dev/null 2>&1 || true
    if ! built "$kernel" "$arch"; then
      echo "$DKMS_PACKAGE_NAME: could not load the prebuilt modules for $kernel ($tarball)" >&2
      continue
    fi
    if [ -d "/lib/modules/$kernel" ]; then
      dkms install -m "$DKMS_NAME" -v "$DKMS_VERSION" -k "$kernel" -a "$arch"
    fi
  done
}

built() {
  dkms status -m "$DKMS_NAME" -v "$DKMS_VERSION" -k "$1" -a "$2" | grep -q -E ': (built|installed)'
}

case "$1" in
  configure)
    if [ ! -f /usr/lib/dkms/common.postinst ]; then
      echo "ERROR: DKMS version is too old and $DKMS_PACKAGE_NAME was not"
      echo "built with legacy DKMS support."
      exit 1
    fi
    /usr/lib/dkms/common.postinst "$DKMS_NAME" "$DKMS_VERSION" "/usr/share/$DKMS_PACKAGE_NAME" "" "$2"
    if [ ! -f /etc/dkms/no-autoinstall ]; then
      load_prebuilt
    fi
    ;;
esac

exit 0
`;
}

function prerm(module: string, version: string): string {
  return `#!/bin/sh
set -e

# dh_dkms's prerm (debhelper's prerm-dkms): DKMS forgets every kernel's build, kfarm's prebuilt ones included.
DKMS_NAME=${shellQuote(module)}
DKMS_VERSION=${shellQuote(version)}

case "$1" in
  remove|upgrade|deconfigure)
    if [ "$(dkms status -m "$DKMS_NAME" -v "$DKMS_VERSION")" ]; then
      dkms remove -m "$DKMS_NAME" -v "$DKMS_VERSION" --all
    fi
    ;;
esac

exit 0
`;
}
