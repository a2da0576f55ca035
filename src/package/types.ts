export type PackageFormat = 'dkms' | 'deb' | 'rpm';
export const packageFormats: readonly PackageFormat[] = ['dkms', 'deb', 'rpm'];

/** One built kernel's modules as packaging sees them: read from the DKMS tree, signed when asked. */
export interface KernelBuild {
  targetId: string;
  module: string;
  version: string;
  release: string;
  kernel: string;
  arch: string;
  /** `<name>.ko` files, sorted by name; signed copies when signing was asked for. */
  modules: { name: string; data: Buffer }[];
  symvers?: Buffer;
  /** From the modules' `.modinfo` (MODULE_LICENSE / MODULE_DESCRIPTION), when present. */
  licenses: string[];
  descriptions: string[];
  authors: string[];
}
