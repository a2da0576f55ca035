import type { Engine } from '../engine/index.js';

export type PackageFormat = 'dkms' | 'deb' | 'rpm' | 'dkms-deb';
export const packageFormats: readonly PackageFormat[] = ['dkms', 'deb', 'rpm', 'dkms-deb'];
/** What `kfarm package` makes when no format is named: the per-kernel ones, which need no source tree. */
export const defaultPackageFormats: readonly PackageFormat[] = ['dkms', 'deb', 'rpm'];

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

export interface PackageOptions {
  formats: PackageFormat[];
  /** Module source tree: DKMS tarballs carry it as `dkms_source_tree/` instead of `dkms_binaries_only/`. */
  withSource?: string;
  /** Private key (PEM or DER, unencrypted) and certificate (PEM or DER) to sign every module copy with. */
  signKey?: string;
  signCert?: string;
  /**
   * Stamped on every archive member and package. Default: `SOURCE_DATE_EPOCH` from the environment, else the
   * last git commit time (or newest file mtime) of `withSource ?? source`, else the build's `startedAt`.
   */
  sourceDateEpoch?: number;
  /**
   * The module source tree: the default SOURCE_DATE_EPOCH comes from it (implied by `withSource`), and the
   * `dkms-deb` format ships it (`withSource` when given).
   */
  source?: string;
  /** Debian `Maintainer:` (`Name <email>`); default from DEBFULLNAME/DEBEMAIL. */
  maintainer?: string;
  /** Release whose `rpm` builds the .rpm files (default bookworm: rpm 4.18). */
  rpmRelease?: string;
  engine?: Engine;
  signal?: AbortSignal;
  /** Progress lines. */
  log?: (line: string) => void;
  env?: NodeJS.ProcessEnv;
}
