/** Where DKMS keeps its tree and sources inside a builder, as on a real machine. */
export const DKMS_TREE = '/var/lib/dkms';
export const SOURCE_TREE = '/usr/src';

export interface PackageId {
  packageName: string;
  packageVersion: string;
}

/** Where DKMS (and so kfarm, in its containers) builds a package: make.log paths are relative to it. */
export function buildDirOf(plan: PackageId): string {
  return `${DKMS_TREE}/${plan.packageName}/${plan.packageVersion}/build`;
}

/** A kernel's directory of the DKMS tree, relative to the output directory: `dkms/<m>/<v>/<kver>/<arch>`. */
export function kernelTreeDir(plan: PackageId, kernel: string, arch: string): string {
  return `dkms/${plan.packageName}/${plan.packageVersion}/${kernel}/${arch}`;
}
