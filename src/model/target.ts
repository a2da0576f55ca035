/** Kernel flavours kfarm builds for (Debian's names: the suffix of the kernel release). */
export const FLAVOURS = ['amd64', 'cloud-amd64', 'rt-amd64'] as const;
export type Flavour = (typeof FLAVOURS)[number];

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
  /** The suite that publishes this headers version, e.g. `bookworm-security`. */
  suite: string;
  backports: boolean;
}

/** One kernel to build for, fully resolved by discovery. */
export type Target = KernelTarget;
