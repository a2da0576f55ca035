import { compareDebianVersions, kernelFlavour, kernelVersionKey } from '../util/debian-version.js';

/**
 * What one distribution of the apt repository holds, decided from the packages' control fields alone (pure, so
 * the same pool always gives the same repository): per-kernel module packages, the `--keep-kernels` policy, and
 * the metapackage per module and kernel flavour that follows the newest kernel.
 */

/** The control fields publishing reads of a .deb, and the date of its archive members. */
export interface DebFacts {
  /** File name in the pool. */
  file: string;
  package: string;
  version: string;
  depends: string;
  provides: string;
  section: string;
  maintainer: string;
  /** SOURCE_DATE_EPOCH the package was made with (its `ar` members' date). */
  epoch: number;
}

export interface KernelPackage extends DebFacts {
  kernel: string;
  flavour: string;
  /** `<module>-modules`, shared by every package of the module's binaries. */
  virtual: string;
}

export interface MetaSpec {
  package: string;
  version: string;
  /** The per-kernel package it follows. */
  target: KernelPackage;
}

export interface DistributionPlan {
  /** Pool files the distribution lists (metapackages not included: they are made from `metas`). */
  keep: DebFacts[];
  /** Per-kernel packages left out by `--keep-kernels`. */
  pruned: KernelPackage[];
  metas: MetaSpec[];
}

/** Section kfarm's generated metapackages carry, which is how a later publish tells them from its inputs. */
export const META_SECTION = 'metapackages';

const KERNEL_DEPENDS = /^linux-image-([0-9][A-Za-z0-9.+~_-]*) \| linux-image-\1-unsigned$/;
const SAFE_VERSION = /^[0-9][A-Za-z0-9.+~-]*$/;
const SAFE_PACKAGE = /^[a-z0-9][a-z0-9.+-]*$/;
/** One line of printable text (a Maintainer field copied into a metapackage's control file). */
const SAFE_TEXT = /^[^\p{Cc}]*$/u;

/** A per-kernel module package (src/package/deb.ts) by its Depends and Provides, else undefined. */
export function asKernelPackage(facts: DebFacts): KernelPackage | undefined {
  // Names from a package's control file become a metapackage's name, file name and control text: only what
  // kfarm itself would have written counts (a .deb in the pool is input, not trusted).
  if (!SAFE_VERSION.test(facts.version) || !SAFE_PACKAGE.test(facts.package) || !SAFE_TEXT.test(facts.maintainer))
    return undefined;
  const kernel = KERNEL_DEPENDS.exec(facts.depends)?.[1];
  const virtual = /^([a-z0-9][a-z0-9.+-]*-modules)$/.exec(facts.provides)?.[1];
  const flavour = kernel === undefined ? undefined : kernelFlavour(kernel);
  if (kernel === undefined || virtual === undefined || flavour === undefined) return undefined;
  return { ...facts, kernel, flavour, virtual };
}

/**
 * The metapackage's version: the kernel's release without its flavour (`6.1.0-57` → `6.1.0.57`), then the
 * per-kernel package's version, so it rises with every newer kernel, and with a newer module build for the
 * same kernel: what `apt upgrade` needs to move it.
 */
export function metaVersion(target: KernelPackage): string {
  return `${kernelVersionKey(target.kernel)}+${target.version}`;
}

/** Newest first: kernel release, then package version. */
function newestFirst(a: KernelPackage, b: KernelPackage): number {
  return compareDebianVersions(b.kernel, a.kernel) || compareDebianVersions(b.version, a.version);
}

/**
 * The distribution's contents from everything in its pool: old metapackages dropped (they are made anew), per
 * module and flavour the newest `keepKernels` kernels kept (every version of a kept kernel's package stays), and a
 * metapackage for the newest kernel of each.
 */
export function planDistribution(pool: DebFacts[], keepKernels?: number): DistributionPlan {
  const plan: DistributionPlan = { keep: [], pruned: [], metas: [] };
  const groups = new Map<string, KernelPackage[]>();
  for (const facts of pool) {
    if (facts.section === META_SECTION) continue;
    const kernel = asKernelPackage(facts);
    if (!kernel) {
      plan.keep.push(facts);
      continue;
    }
    const key = `${kernel.virtual} ${kernel.flavour}`;
    groups.set(key, [...(groups.get(key) ?? []), kernel]);
  }
  for (const key of [...groups.keys()].sort()) {
    const packages = (groups.get(key) ?? []).sort(newestFirst);
    const kernels = [...new Set(packages.map((p) => p.kernel))];
    const kept = new Set(kernels.slice(0, keepKernels ?? kernels.length));
    for (const p of packages) (kept.has(p.kernel) ? plan.keep : plan.pruned).push(p);
    const newest = packages[0];
    if (newest)
      plan.metas.push({ package: `${newest.virtual}-${newest.flavour}`, version: metaVersion(newest), target: newest });
  }
  plan.keep.sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  return plan;
}
