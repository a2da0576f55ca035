/** Kernel flavours kfarm builds for (Debian's names: the suffix of the kernel release). */
export const FLAVOURS = ['amd64', 'cloud-amd64', 'rt-amd64'] as const;
export type Flavour = (typeof FLAVOURS)[number];

/** One .deb as the signed index names it: where to download it and what its bytes must hash to. */
export interface PackageFile {
  package: string;
  version: string;
  /** The archive root plus the index's Filename. */
  url: string;
  sha256: string;
  size: number;
}

/** A kernel kfarm can build for: one headers package of one release, as discovery found it in the archive. */
export interface KernelTarget {
  /** `debian/<release>/<kernel>`, e.g. `debian/bookworm/6.1.0-47-amd64`. */
  id: string;
  distro: 'debian';
  release: string;
  /** The kernel release (`uname -r`) the headers are for. */
  kernel: string;
  flavour: Flavour;
  arch: 'x86_64';
  headersPackage: string;
  headersVersion: string;
  commonPackage: string;
  compiler?: string;
  /**
   * The headers package, its -common package and linux-kbuild, from the same suite: what a builder unpacks
   * (no apt). Present whenever discovery found the files in the index.
   */
  debs?: PackageFile[];
  /** The suite that publishes this headers version, e.g. `bookworm-security`. */
  suite: string;
  backports: boolean;
  /** Distribution packages the builder gets besides the toolchain (`--build-deps`, a matrix's `build-deps`). */
  buildDeps?: BuildDeps;
}

/** Build dependencies of one release's targets, checked against its index when the targets were resolved. */
export interface BuildDeps {
  /** What apt installs: the names given, a virtual one replaced by its provider; sorted, no duplicates. */
  packages: string[];
  /**
   * What the index listed for each (`name=version`, or `name=virtual:<provider>`): part of the builder's
   * identity, so a dependency the archive updated makes a new builder instead of reusing the old one.
   */
  versions: string[];
}

/** One kernel to build for, fully resolved by discovery. */
export type Target = KernelTarget;
