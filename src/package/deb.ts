import { createHash } from 'node:crypto';
import { KfarmError } from '../model/errors.js';
import { arArchive, gzip, tarArchive, withParents, type TarEntry } from './archive.js';
import type { KernelBuild } from './types.js';

/**
 * Precompiled-module .debs following dkms mkbmdeb's conventions (removed from dkms in 2.8.8):
 *
 * - package `<module>-modules-<kver>` (module `_` → `-`, lower case), version `<module version>-1`,
 *   `Provides: <module>-modules`, `Depends: linux-image-<kver> | linux-image-<kver>-unsigned`;
 * - the `.ko` files mode 0644 in `<moddir>/<kver>/updates/dkms/`, where `<moddir>` is what the target release's
 *   own kernel packages use (bookworm `/lib/modules`, trixie `/usr/lib/modules`);
 * - postinst (configure, abort-*) and postrm run `depmod -a -F /boot/System.map-<kver> <kver>` only when that
 *   System.map exists: depmod for the target kernel, never the running one;
 * - md5sums, Installed-Size, `/usr/share/doc/<pkg>/copyright` and `changelog.Debian.gz` (gzip -9n framing).
 *
 * Written in TypeScript (ar + ustar + gzip with explicit headers), so the same inputs and SOURCE_DATE_EPOCH give
 * the same bytes on any host.
 */

export interface DebOptions {
  epoch: number;
  /** `<moddir>` of the target release. */
  moduleDir: string;
  /** `Name <email>`; default from DEBFULLNAME/DEBEMAIL, else a placeholder. */
  maintainer: string;
  /** One line for the changelog and description, e.g. who signed the modules. */
  note?: string;
}

export const defaultMaintainer = 'kfarm <kfarm@example.org>';

export function maintainerFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  const name = env['DEBFULLNAME']?.trim();
  const email = env['DEBEMAIL']?.trim();
  if (email && /<.+@.+>/.test(email)) return email;
  if (email && /^[^\s<>]+@[^\s<>]+$/.test(email)) return `${name || email.split('@')[0]} <${email}>`;
  return defaultMaintainer;
}

export function debPackageName(module: string, kernel: string): string {
  return `${module.replace(/_/g, '-')}-modules-${kernel}`.toLowerCase().replace(/[^a-z0-9.+-]/g, '-');
}

/** The virtual package every package of the module's binaries provides (mkbmdeb's `<module>-modules`). */
export function modulesVirtualName(module: string): string {
  return `${module.replace(/_/g, '-').toLowerCase()}-modules`;
}

/** The DKMS fallback package of the module (src/package/dkms-deb.ts), which conflicts with the per-kernel ones. */
export function dkmsDebPackageName(module: string): string {
  return `${module.replace(/_/g, '-')}-dkms`.toLowerCase().replace(/[^a-z0-9.+-]/g, '-');
}

/** `<module version>-1`; characters Debian versions do not allow become `.`, and a leading non-digit gets `0~`. */
export function debVersion(version: string): string {
  let upstream = version.replace(/[^A-Za-z0-9.+~-]/g, '.');
  if (!/^[0-9]/.test(upstream)) upstream = `0~${upstream}`;
  return `${upstream}-1`;
}

export function debFileName(build: Pick<KernelBuild, 'module' | 'version' | 'kernel'>): string {
  return `${debPackageName(build.module, build.kernel)}_${debVersion(build.version)}_amd64.deb`;
}

export function rfc2822(epoch: number): string {
  const d = new Date(epoch * 1000);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const two = (n: number) => String(n).padStart(2, '0');
  const date = `${days[d.getUTCDay()]}, ${two(d.getUTCDate())} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()}`;
  const time = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
  return `${date} ${time} +0000`;
}

function depmodScript(kernel: string, actions: string): string {
  return `#!/bin/sh
set -e

# depmod for the kernel these modules are for (never the running kernel's), and only once that kernel is installed.
case "$1" in
  ${actions})
    if [ -e /boot/System.map-${kernel} ]; then
      depmod -a -F /boot/System.map-${kernel} ${kernel} || true
    fi
    ;;
esac

exit 0
`;
}

export function buildDeb(build: KernelBuild, options: DebOptions): Buffer {
  if (!/^[0-9][A-Za-z0-9.+~_-]*$/.test(build.kernel))
    throw new KfarmError('KFARM_USAGE', `unsafe kernel release ${JSON.stringify(build.kernel)}`);
  const pkg = debPackageName(build.module, build.kernel);
  const version = debVersion(build.version);
  const doc = `usr/share/doc/${pkg}`;
  const koDir = `${options.moduleDir.replace(/^\/+/, '')}/${build.kernel}/updates/dkms`;
  const changelog = changelogText(
    [`${build.module} ${build.version} precompiled by kfarm for Linux ${build.kernel} (Debian ${build.release}).`],
    options,
    pkg,
    version,
  );
  const copyright = copyrightText(build, options.epoch);

  const files: TarEntry[] = [
    { path: `${doc}/copyright`, type: 'file', mode: 0o644, data: Buffer.from(copyright) },
    { path: `${doc}/changelog.Debian.gz`, type: 'file', mode: 0o644, data: gzip(Buffer.from(changelog)) },
    ...build.modules.map((m): TarEntry => ({ path: `${koDir}/${m.name}`, type: 'file', mode: 0o644, data: m.data })),
  ];
  const data = withParents(files);
  const control = controlText(build, options, pkg, version, installedSize(data));
  return arArchive(
    [
      { name: 'debian-binary', data: Buffer.from('2.0\n') },
      {
        name: 'control.tar.gz',
        data: gzip(controlTar(control, md5sums(files), depmodScripts(build.kernel), options.epoch)),
      },
      { name: 'data.tar.gz', data: gzip(tarArchive(data, options.epoch)) },
    ],
    options.epoch,
  );
}

/** changelog.Debian: one entry, the given bullets and the signing note. */
export function changelogText(lines: string[], options: DebOptions, pkg: string, version: string): string {
  const bullets = [...lines, ...(options.note ? [options.note] : [])];
  return `${pkg} (${version}) unstable; urgency=medium

${bullets
  .map((b) =>
    wrap(b, 76)
      .map((line, i) => `${i === 0 ? '  * ' : '    '}${line}`)
      .join('\n'),
  )
  .join('\n')}

 -- ${options.maintainer}  ${rfc2822(options.epoch)}
`;
}

function copyrightText(build: KernelBuild, epoch: number): string {
  const koNames = build.modules.map((m) => m.name).join(', ');
  const license = build.licenses.length ? build.licenses.join(', ') : 'unknown (the modules declare no MODULE_LICENSE)';
  const year = new Date(epoch * 1000).getUTCFullYear();
  const authors = build.authors.length ? ` (MODULE_AUTHOR: ${build.authors.join('; ')})` : '';
  const gpl = build.licenses.some((l) => /GPL/.test(l) && !/LGPL/.test(l));
  const gplText = gpl
    ? '\nOn Debian systems, the complete text of the GNU General Public License version 2 can be found in\n' +
      '/usr/share/common-licenses/GPL-2.\n'
    : '';
  return `${build.module} ${build.version}: kernel modules ${koNames}, built by kfarm from the ${build.module} DKMS package
for Linux ${build.kernel} (Debian ${build.release}).

Copyright (c) ${year} the authors of ${build.module}${authors}; see its source.

License, as the modules declare it (MODULE_LICENSE): ${license}
${gplText}`;
}

/** dpkg-gencontrol: regular files and symlinks count their size in KiB rounded up, everything else 1. */
export function installedSize(data: TarEntry[]): number {
  return data.reduce((kib, e) => kib + (e.type === 'file' ? Math.ceil((e.data?.length ?? 0) / 1024) : 1), 0);
}

export function md5sums(files: TarEntry[]): string {
  return files
    .map(
      (e) =>
        `${createHash('md5')
          .update(e.data ?? Buffer.alloc(0))
          .digest('hex')}  ${e.path}\n`,
    )
    .sort()
    .join('');
}

function controlText(
  build: KernelBuild,
  options: DebOptions,
  pkg: string,
  version: string,
  installedSize: number,
): string {
  const koNames = build.modules.map((m) => m.name).join(', ');
  const summary = `${build.module} ${build.version} kernel modules for Linux ${build.kernel}`;
  const described = build.descriptions.length ? `${build.descriptions.join('; ').replace(/\.?$/, '.')} ` : '';
  const note = options.note ? ` ${options.note}` : '';
  const longDescription =
    `${described}Precompiled from the ${build.module} ${build.version} DKMS package for the Debian ${build.release} ` +
    `kernel ${build.kernel}, so no compiler or kernel headers are needed: ${koNames}, installed in ` +
    `${options.moduleDir}/${build.kernel}/updates/dkms.${note}`;
  return [
    `Package: ${pkg}`,
    `Version: ${version}`,
    'Architecture: amd64',
    `Maintainer: ${options.maintainer}`,
    `Installed-Size: ${installedSize}`,
    `Depends: linux-image-${build.kernel} | linux-image-${build.kernel}-unsigned`,
    `Provides: ${modulesVirtualName(build.module)}`,
    `Conflicts: ${dkmsDebPackageName(build.module)}`,
    'Section: kernel',
    'Priority: optional',
    `Description: ${summary}`,
    ...wrap(longDescription).map((line) => ` ${line}`),
  ].join('\n');
}

function depmodScripts(kernel: string): Record<string, string> {
  return {
    postinst: depmodScript(kernel, 'configure|abort-upgrade|abort-remove|abort-deconfigure'),
    postrm: depmodScript(kernel, 'remove|upgrade|disappear|abort-install|abort-upgrade'),
  };
}

/** control.tar: control, md5sums (none for a package without files) and the maintainer scripts, mode 0755. */
export function controlTar(control: string, md5sums: string, scripts: Record<string, string>, epoch: number): Buffer {
  const entries: TarEntry[] = [{ path: 'control', type: 'file', mode: 0o644, data: Buffer.from(`${control}\n`) }];
  if (md5sums) entries.push({ path: 'md5sums', type: 'file', mode: 0o644, data: Buffer.from(md5sums) });
  for (const [name, text] of Object.entries(scripts))
    entries.push({ path: name, type: 'file', mode: 0o755, data: Buffer.from(text) });
  return tarArchive(withParents(entries), epoch);
}

/** Wraps description text at 79 columns for the control file's extended description. */
export function wrap(text: string, width = 78): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}
