import { cpus } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { Engine } from '../engine/index.js';
import type { FarmEvents } from '../model/events.js';
import type { KnownFailing } from '../model/known-failing.js';
import type { Target } from '../model/result.js';
import { releaseSources, type SuiteSource } from '../plan/debian-releases.js';
import { cacheRoot } from '../util/cache-dir.js';

export interface FarmOptions {
  source: string;
  /**
   * A source tree per release, for the targets of that release (others build `source`): `kfarm build
   * debian:<name>` builds each release's own package.
   */
  releaseTrees?: ReadonlyMap<string, string>;
  /**
   * DKMS packages built and installed, in this order, before the module, for the same kernel in the same builder
   * (`--with-module`): what a module's BUILD_DEPENDS names. Each is one tree, or one per release as `source`.
   */
  withModules?: ReadonlyArray<{ source: string; releaseTrees?: ReadonlyMap<string, string> }>;
  /**
   * Trees unpacked from packages, each a `/usr/src/<module>-<version>` directory: DKMS builds those as
   * `-m <module> -v <version>`, the version taken from the directory's name rather than from PACKAGE_VERSION.
   */
  packageTrees?: ReadonlySet<string>;
  out: string;
  targets: Target[];
  /** Where each release's packages come from (base image sources.list). Default: Debian's archive. */
  sources?: (release: string) => SuiteSource[];
  /** Builds at a time (default: CPU count). */
  jobs?: number;
  /** Image preparations at a time (network and dpkg bound; default 3). */
  imageJobs?: number;
  /** Per-target limit (default 30 min); waiting for a build slot does not count. */
  timeoutMs?: number;
  /** How long sourcing dkms.conf may take (default 60 s); longer is the user's error (an endless loop), exit 2. */
  evaluationTimeoutMs?: number;
  /** Sourced after dkms.conf, as DKMS sources /etc/dkms/<module>.conf (readConfOverride checks it). */
  confOverride?: string;
  /** Memory limit of each build container (default 4 GiB); exceeding it is status `oom`. */
  memoryBytes?: number;
  /**
   * What a build may write, per writable mount (the DKMS tree, /tmp, /kfarm); default 2 GiB. The mounts are
   * in memory, so together they also count against `memoryBytes`.
   */
  diskBytes?: number;
  knownFailing?: readonly KnownFailing[];
  /** Stop scheduling builds after the first failure. */
  failFast?: boolean;
  /** Dates make.log; when given, part of the cache key. Default: the source's last git commit, else its newest file. */
  sourceDateEpoch?: number;
  /** The result cache (`<dir>/results`); false builds everything and stores nothing. Default: kfarm's cache dir. */
  cache?: { dir: string } | false;
  /** Image preparation logs (kept, so a failure's log can be read). Default: `<kfarm's cache dir>/logs`. */
  logDir?: string;
  signal?: AbortSignal;
  events?: FarmEvents;
  /** Reuse a connected engine (tests, long-lived library users); otherwise one is connected. */
  engine?: Engine;
}

/** FarmOptions with every default applied, in one place. */
export interface FarmSettings {
  source: string;
  /** Every source tree a target builds: `source` and the release trees, resolved. */
  trees: string[];
  /** The source tree the targets of `release` build. */
  treeOf: (release: string) => string;
  /** The `--with-module` trees the targets of `release` build first, in order. */
  withTreesOf: (release: string) => string[];
  /** A package tree's directory name (`<module>-<version>`), undefined for a tree of the user's. */
  packageDirOf: (tree: string) => string | undefined;
  out: string;
  targets: Target[];
  sources: (release: string) => SuiteSource[];
  concurrency: number;
  /** `make -j` inside each build: DKMS's own default, every core. */
  parallelJobs: number;
  imageJobs: number;
  timeoutMs: number;
  evaluationTimeoutMs?: number;
  confOverride?: string;
  limits: { memoryBytes: number; diskBytes: number; pids: number; cpus: number };
  knownFailing: readonly KnownFailing[];
  failFast: boolean;
  sourceDateEpoch?: number;
  /** kfarm's cache root: results (unless disabled) and image preparation logs. */
  cacheDir: string;
  useCache: boolean;
  logDir: string;
  events: FarmEvents;
}

export function farmSettings(options: FarmOptions): FarmSettings {
  const cores = cpus().length;
  const cacheDir = options.cache ? options.cache.dir : cacheRoot();
  const source = resolve(options.source);
  const treeOf = treesBy(options);
  const withModules = (options.withModules ?? []).map(treesBy);
  const packageTrees = new Set([...(options.packageTrees ?? [])].map((tree) => resolve(tree)));
  const allTrees = [options, ...(options.withModules ?? [])].flatMap((s) => [
    s.source,
    ...(s.releaseTrees ?? []).values(),
  ]);
  return {
    source,
    trees: [...new Set(allTrees.map((tree) => resolve(tree)))],
    treeOf,
    withTreesOf: (release) => withModules.map((of) => of(release)),
    packageDirOf: (tree) => (packageTrees.has(resolve(tree)) ? basename(tree) : undefined),
    out: resolve(options.out),
    targets: options.targets,
    sources: options.sources ?? releaseSources,
    concurrency: farmConcurrency(options),
    // Builds side by side then oversubscribe a little, which costs nothing, and the last builds of a run
    // keep all cores busy instead of one.
    parallelJobs: cores,
    imageJobs: options.imageJobs ?? 3,
    timeoutMs: options.timeoutMs ?? 30 * 60_000,
    ...(options.evaluationTimeoutMs === undefined ? {} : { evaluationTimeoutMs: options.evaluationTimeoutMs }),
    ...(options.confOverride === undefined ? {} : { confOverride: options.confOverride }),
    limits: {
      memoryBytes: options.memoryBytes ?? 4 * 1024 ** 3,
      diskBytes: options.diskBytes ?? 2 * 1024 ** 3,
      pids: 4096,
      cpus: cores,
    },
    knownFailing: options.knownFailing ?? [],
    failFast: options.failFast === true,
    ...(options.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: options.sourceDateEpoch }),
    cacheDir,
    useCache: options.cache !== false,
    logDir: options.logDir ?? join(cacheDir, 'logs'),
    events: options.events ?? {},
  };
}

/** A source's tree for a release: its release tree, else its one tree; resolved. */
function treesBy(source: { source: string; releaseTrees?: ReadonlyMap<string, string> }): (release: string) => string {
  const trees = new Map([...(source.releaseTrees ?? [])].map(([release, dir]) => [release, resolve(dir)]));
  const tree = resolve(source.source);
  return (release) => trees.get(release) ?? tree;
}

/** Builds at a time for these options: what `--jobs` means. */
export function farmConcurrency(options: Pick<FarmOptions, 'jobs' | 'targets'>): number {
  return Math.max(1, Math.min(options.jobs ?? cpus().length, options.targets.length));
}
