import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { PackageCache } from '../images/package-cache.js';
import { KfarmError } from '../model/errors.js';
import { unpackDkmsDeb, type DebSource } from '../plan/deb-source.js';
import { lookupPackages } from '../plan/debian-lookup.js';
import { PACKAGE_NAME } from '../plan/build-deps.js';
import { defaultSuiteNames, releaseComponents } from '../plan/debian-releases.js';

/** Build dependencies with where they came from, as resolvePlan takes them. */
export interface DepsList {
  names: string[];
  where: string;
}

/**
 * What `kfarm build <src>` builds: a source directory as it is; a `*-dkms` .deb unpacked; or `debian:<name>`,
 * each target release's own package of that name fetched from its archive and unpacked. A package's Depends
 * become build dependencies of the releases it is built for, as installing it would pull them in.
 */
export interface BuildSource {
  /** The tree known before the targets are: a directory, an unpacked .deb; undefined for `debian:`. */
  tree?: string;
  /** Build dependencies of every release (a .deb's Depends). */
  deps?: DepsList;
  /** `debian:<name>`: the release's own package, fetched and unpacked (once per release). */
  forRelease?: (release: string) => Promise<{ tree: string; deps: DepsList }>;
  /** The trees `forRelease` unpacked so far, by release. */
  releaseTrees: Map<string, string>;
  /** Its trees are a package's `/usr/src/<module>-<version>` (a .deb or `debian:`), not a directory of the user's. */
  fromPackage?: boolean;
  /** Removes what was unpacked. */
  close: () => Promise<void>;
}

export interface SourceContext {
  /** kfarm's cache dir: fetched packages are kept in `<dir>/packages` (a temporary dir without one). */
  cacheDir: string | undefined;
  log: (line: string) => void;
  signal?: AbortSignal;
}

export async function openBuildSource(src: string, context: SourceContext): Promise<BuildSource> {
  if (src.startsWith('debian:')) return debianSource(src, context);
  if (!src.endsWith('.deb')) return { tree: src, releaseTrees: new Map(), close: () => Promise.resolve() };
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-dkms-deb-'));
  const close = () => rm(dir, { recursive: true, force: true });
  try {
    const deb = await unpackDkmsDeb(src, dir);
    context.log(`kfarm: ${src}: ${describeDeb(deb)}`);
    return {
      tree: deb.sourceDir,
      deps: { names: deb.buildDeps, where: `${src}: Depends` },
      releaseTrees: new Map(),
      fromPackage: true,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

async function debianSource(src: string, context: SourceContext): Promise<BuildSource> {
  const name = src.slice('debian:'.length);
  if (!PACKAGE_NAME.test(name))
    throw new KfarmError('KFARM_USAGE', `${src}: expected debian:<package>, e.g. debian:zfs-dkms`);
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-dkms-deb-'));
  const packages = new PackageCache(context.cacheDir ? join(context.cacheDir, 'packages') : join(dir, 'packages'));
  const releaseTrees = new Map<string, string>();
  const unpacked = new Map<string, Promise<{ tree: string; deps: DepsList }>>();
  const forRelease = (release: string) => {
    let promise = unpacked.get(release);
    if (!promise) {
      promise = fetchReleasePackage({ src, name, release, into: join(dir, release), packages }, context).then(
        (fetched) => {
          releaseTrees.set(release, fetched.tree);
          return fetched;
        },
      );
      unpacked.set(release, promise);
    }
    return promise;
  };
  return { forRelease, releaseTrees, fromPackage: true, close: () => rm(dir, { recursive: true, force: true }) };
}

/** The release's package (the version apt would install: release, -updates, -security), checksummed, unpacked. */
async function fetchReleasePackage(
  job: { src: string; name: string; release: string; into: string; packages: PackageCache },
  { log, signal }: SourceContext,
): Promise<{ tree: string; deps: DepsList }> {
  const { src, name, release } = job;
  const lookup = { components: releaseComponents(release), ...(signal ? { signal } : {}) };
  const found = (await lookupPackages(release, [name], lookup)).get(name);
  if (!found) {
    const suites = defaultSuiteNames(release);
    throw new KfarmError('KFARM_CONFIG_INVALID', `${src}: no package ${name} in debian/${release} (${suites})`);
  }
  const [file] = await job.packages.fetchAll([found], signal ? { signal } : {});
  await mkdir(job.into, { recursive: true });
  const deb = await unpackDkmsDeb(file as string, job.into, `${src} (${release} ${found.version})`);
  log(`kfarm: ${src}: ${release}: ${describeDeb(deb)} (${found.suite})`);
  return { tree: deb.sourceDir, deps: { names: deb.buildDeps, where: `${src} (${release}): Depends` } };
}

function describeDeb(deb: DebSource): string {
  const deps = deb.buildDeps.length ? `, build dependencies from its Depends: ${deb.buildDeps.join(' ')}` : '';
  const modules = deb.moduleDeps.length
    ? `; it depends on DKMS package(s) ${deb.moduleDeps.join(' ')}, built first only when given with --with-module`
    : '';
  return `${deb.package} ${deb.version}, ${basename(deb.sourceDir)}${deps}${modules}`;
}
