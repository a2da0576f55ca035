import { KfarmError } from '../model/errors.js';
import { DEFAULT_INDEX_TTL_MS, indexCacheDir, readCachedIndex, writeCachedIndex } from './debian-index-cache.js';
import { fetchSuiteIndex, suiteUrl } from './debian-fetch.js';
import { FLAVOURS, flavourOf, type Flavour, type SuiteIndex } from './debian-packages.js';
import {
  DEBIAN_RELEASES,
  debianReleaseRank,
  debianSuites,
  type DebianSuite,
  type MirrorOptions,
} from './debian-releases.js';
import { compareDebianVersions } from '../util/debian-version.js';
import { formatTargetId, type KernelTarget } from './targets.js';

export { fetchSuiteIndex } from './debian-fetch.js';
export { FLAVOURS, flavourOf, kernelsFromPackages, parsePackages } from './debian-packages.js';
export type {
  Flavour,
  PackageStanza,
  SuiteDefault,
  SuiteFile,
  SuiteImage,
  SuiteIndex,
  SuiteKernel,
} from './debian-packages.js';

/** A kernel image package as discovery found it: where to download it and what it must hash to. */
export interface KernelImage {
  kernel: string;
  /** `linux-image-<kver>` or `linux-image-<kver>-unsigned`. */
  package: string;
  version: string;
  unsigned: boolean;
  /** The .deb's full URL (archive root + Filename). */
  url: string;
  sha256: string;
  size: number;
  suite: string;
  backports: boolean;
}

export interface ReleaseDiscoveryOptions extends MirrorOptions {
  /** Default: all of FLAVOURS. */
  flavours?: readonly string[];
  /** Default true: also fetch `<release>-backports`. */
  includeBackports?: boolean;
  /** Ignore cached indexes and fetch every suite again. */
  refresh?: boolean;
  /** kfarm's cache root; indexes live in its `index/` subdirectory. */
  cacheDir?: string;
  /** How long a cached index stays fresh. Default one hour. */
  ttlMs?: number;
  /** false skips InRelease signature checks (recorded test archives). */
  verifySignature?: boolean;
  signal?: AbortSignal;
}

export interface DiscoveryOptions extends ReleaseDiscoveryOptions {
  distro: 'debian';
  /** Default: every release kfarm knows. */
  releases?: readonly string[];
}

export interface ReleaseIndex {
  release: string;
  /** One entry per kernel release, sorted oldest first. */
  kernels: KernelTarget[];
  /**
   * The kernel each flavour's `linux-headers-<flavour>` metapackage installs: the highest metapackage version
   * across the release's non-backports suites. This is what "latest" means.
   */
  defaults: Partial<Record<Flavour, string>>;
  /**
   * `linux-image-<kver>` and `linux-image-<kver>-unsigned` packages of the selected flavours, one entry per
   * package (the newest version across suites), sorted by kernel then package.
   */
  images?: KernelImage[];
}

/** Every kernel whose headers Debian publishes for the selected releases, sorted by release, then version. */
export async function discoverKernels(options: DiscoveryOptions): Promise<KernelTarget[]> {
  const releases = [...new Set(options.releases ?? DEBIAN_RELEASES)];
  const indexes = await allOrNothing(releases, options.signal, (release, signal) =>
    discoverReleaseIndex(release, { ...options, signal }),
  );
  return indexes
    .sort((a, b) => debianReleaseRank(a.release) - debianReleaseRank(b.release))
    .flatMap((index) => index.kernels);
}

/**
 * Fetches (or reads from cache) every suite of `release` in parallel. A kernel release published in several
 * suites (trixie and trixie-security often share one) is listed once, from the suite with the highest version.
 */
export async function discoverReleaseIndex(
  release: string,
  options: ReleaseDiscoveryOptions = {},
): Promise<ReleaseIndex> {
  const flavours = checkFlavours(options.flavours);
  const suites = debianSuites(release, options).filter((s) => options.includeBackports !== false || !s.backports);
  const loaded = await allOrNothing(suites, options.signal, async (suite, signal) => ({
    suite,
    index: await loadSuiteIndex(suite, { ...options, signal }),
  }));

  const kernels = new Map<string, KernelTarget>();
  const images = new Map<string, KernelImage>();
  const defaults: Partial<Record<Flavour, { version: string; kernel: string }>> = {};
  for (const { suite, index } of loaded) {
    keepNewestImages(images, suite, index, flavours);
    keepNewestKernels(kernels, release, suite, index, flavours);
    if (suite.backports) continue;
    keepHighestDefaults(defaults, index, flavours);
  }

  return {
    release,
    kernels: [...kernels.values()].sort(
      (a, b) => compareDebianVersions(a.headersVersion, b.headersVersion) || compareStrings(a.kernel, b.kernel),
    ),
    defaults: Object.fromEntries(Object.entries(defaults).map(([flavour, meta]) => [flavour, meta.kernel])),
    images: [...images.values()].sort(
      (a, b) => compareStrings(a.kernel, b.kernel) || compareStrings(a.package, b.package),
    ),
  };
}

function keepNewestImages(
  images: Map<string, KernelImage>,
  suite: DebianSuite,
  index: SuiteIndex,
  flavours: Set<Flavour>,
): void {
  for (const image of index.images ?? []) {
    const flavour = flavourOf(image.kernel);
    if (!flavour || !flavours.has(flavour)) continue;
    const old = images.get(image.package);
    if (old && compareDebianVersions(image.version, old.version) <= 0) continue;
    const { filename, ...rest } = image;
    images.set(image.package, {
      ...rest,
      url: `${suite.archiveUrl}/${filename}`,
      suite: suite.name,
      backports: suite.backports,
    });
  }
}

function keepNewestKernels(
  kernels: Map<string, KernelTarget>,
  release: string,
  suite: DebianSuite,
  index: SuiteIndex,
  flavours: Set<Flavour>,
): void {
  for (const found of index.kernels) {
    if (!flavours.has(found.flavour)) continue;
    const old = kernels.get(found.kernel);
    if (old && compareDebianVersions(found.headersVersion, old.headersVersion) <= 0) continue;
    kernels.set(found.kernel, {
      id: formatTargetId({ distro: 'debian', release, kernel: found.kernel }),
      distro: 'debian',
      release,
      kernel: found.kernel,
      flavour: found.flavour,
      arch: 'x86_64',
      headersPackage: found.headersPackage,
      headersVersion: found.headersVersion,
      commonPackage: found.commonPackage,
      ...(found.compiler ? { compiler: found.compiler } : {}),
      ...(found.files
        ? {
            debs: found.files.map(({ filename, ...file }) => ({ ...file, url: `${suite.archiveUrl}/${filename}` })),
          }
        : {}),
      suite: suite.name,
      backports: suite.backports,
    });
  }
}

function keepHighestDefaults(
  defaults: Partial<Record<Flavour, { version: string; kernel: string }>>,
  index: SuiteIndex,
  flavours: Set<Flavour>,
): void {
  for (const meta of index.defaults) {
    const old = defaults[meta.flavour];
    if (!flavours.has(meta.flavour) || (old && compareDebianVersions(meta.version, old.version) <= 0)) continue;
    defaults[meta.flavour] = meta;
  }
}

async function loadSuiteIndex(suite: DebianSuite, options: ReleaseDiscoveryOptions): Promise<SuiteIndex> {
  const url = suiteUrl(suite);
  const dir = indexCacheDir(options.cacheDir);
  if (!options.refresh) {
    const cached = await readCachedIndex(dir, url, options.ttlMs ?? DEFAULT_INDEX_TTL_MS);
    if (cached) return cached;
  }
  const index = await fetchSuiteIndex(suite, options);
  // The cache only saves time: a read-only or full disk must not turn a good fetch into a failure.
  await writeCachedIndex(dir, url, index).catch(() => undefined);
  return index;
}

/**
 * Runs `task` on every item at once. The first failure cancels the others and is what gets thrown, once they
 * have all stopped: no download or cache write outlives the call.
 */
async function allOrNothing<T, R>(
  items: readonly T[],
  outer: AbortSignal | undefined,
  task: (item: T, signal: AbortSignal) => Promise<R>,
): Promise<R[]> {
  const abort = new AbortController();
  const signal = outer ? AbortSignal.any([outer, abort.signal]) : abort.signal;
  let first: { error: unknown } | undefined;
  const settled = await Promise.allSettled(
    items.map((item) =>
      task(item, signal).catch((error: unknown) => {
        first ??= { error };
        abort.abort();
        throw error;
      }),
    ),
  );
  if (first) throw first.error;
  return settled.map((result) => (result as PromiseFulfilledResult<R>).value);
}

function checkFlavours(flavours: readonly string[] | undefined): Set<Flavour> {
  const known: readonly string[] = FLAVOURS;
  for (const flavour of flavours ?? []) {
    if (!known.includes(flavour)) {
      throw new KfarmError('KFARM_USAGE', `unknown flavour "${flavour}": expected one of ${FLAVOURS.join(', ')}`);
    }
  }
  return new Set((flavours ?? FLAVOURS) as readonly Flavour[]);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
