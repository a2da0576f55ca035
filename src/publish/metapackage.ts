import { arArchive, gzip, tarArchive, withParents, type TarEntry } from '../package/archive.js';
import { changelogText, controlTar, installedSize, md5sums, wrap } from '../package/deb.js';
import { META_SECTION, type MetaSpec } from './apt-layout.js';

/**
 * A metapackage that follows the kernel, as `linux-image-amd64` follows the newest ABI: `<module>-modules-<flavour>`
 * depends on exactly the per-kernel package of the newest kernel of that flavour in the distribution. Dated and
 * signed-off like the package it follows, so the same repository contents always give the same bytes.
 */
export function metaFileName(spec: MetaSpec): string {
  return `${spec.package}_${spec.version}_amd64.deb`;
}

export function buildMetapackage(spec: MetaSpec, release: string): Buffer {
  const { target } = spec;
  const epoch = target.epoch;
  const doc = `usr/share/doc/${spec.package}`;
  const options = { epoch, moduleDir: '', maintainer: target.maintainer };
  const line =
    `Follows ${target.package} ${target.version}, the newest ${target.flavour} kernel (${target.kernel}) ` +
    `of the repository's ${release}.`;
  const files: TarEntry[] = [
    {
      path: `${doc}/copyright`,
      type: 'file',
      mode: 0o644,
      data: Buffer.from(`${spec.package}: a metapackage made by kfarm; see ${target.package} for the modules.\n`),
    },
    {
      path: `${doc}/changelog.Debian.gz`,
      type: 'file',
      mode: 0o644,
      data: gzip(Buffer.from(changelogText([line], options, spec.package, spec.version))),
    },
  ];
  const data = withParents(files);
  const control = [
    `Package: ${spec.package}`,
    `Version: ${spec.version}`,
    'Architecture: amd64',
    `Maintainer: ${target.maintainer}`,
    `Installed-Size: ${installedSize(data)}`,
    `Depends: ${target.package} (= ${target.version})`,
    `Section: ${META_SECTION}`,
    'Priority: optional',
    `Description: ${target.virtual.replace(/-modules$/, '')} kernel modules for the newest ${target.flavour} kernel`,
    ...wrap(
      `This metapackage depends on the package of modules for the newest ${target.flavour} kernel of Debian ` +
        `${release} in this repository, so that upgrading it keeps the modules in step with the kernel. ${line}`,
    ).map((l) => ` ${l}`),
  ].join('\n');
  return arArchive(
    [
      { name: 'debian-binary', data: Buffer.from('2.0\n') },
      { name: 'control.tar.gz', data: gzip(controlTar(control, md5sums(files), {}, epoch)) },
      { name: 'data.tar.gz', data: gzip(tarArchive(data, epoch)) },
    ],
    epoch,
  );
}
