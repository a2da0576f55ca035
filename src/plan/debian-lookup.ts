import type { PackageFile } from '../model/target.js';
import { readVerifiedIndex, type FetchIndexOptions } from './debian-fetch.js';
import type { PackageStanza } from './debian-packages.js';
import { debianSuites, type DebianSuite, type MirrorOptions } from './debian-releases.js';
import { compareDebianVersions } from '../util/debian-version.js';

/** The components kfarm looks packages up in: zfs-dkms is in contrib, broadcom-sta-dkms in non-free. */
export const COMPONENTS = ['main', 'contrib', 'non-free'] as const;

/** A binary package of a release, as its signed index lists it. */
export interface ArchivePackage extends PackageFile {
  /** The suite whose index listed the version kept, e.g. `trixie-security`. */
  suite: string;
  depends?: string;
  /** Set when the name looked up is a virtual package this one provides. */
  provides?: string;
}

export interface LookupOptions extends MirrorOptions, FetchIndexOptions {
  /** Default: COMPONENTS. */
  components?: readonly string[];
  /** Also find names that are virtual packages (`Provides:`): the newest provider is kept for them. */
  virtual?: boolean;
}

/**
 * Finds binary packages by name (or names matching a test) in a release's amd64 indexes (which also list `Architecture: all` packages):
 * every suite apt would install from by default (release, -updates, -security; backports are opt-in there too),
 * every component, the newest version of each name. Names the release does not have are absent from the result.
 */
export async function lookupPackages(
  release: string,
  names: readonly string[] | ((name: string) => boolean),
  options: LookupOptions = {},
): Promise<Map<string, ArchivePackage>> {
  const wanted = typeof names === 'function' ? names : (name: string) => names.includes(name);
  const suites = debianSuites(release, options).filter((s) => !s.backports);
  const components = options.components ?? COMPONENTS;
  const lists = await Promise.all(
    suites.flatMap((suite) => components.map((component) => packagesOf(suite, component, wanted, options))),
  );
  const found = new Map<string, ArchivePackage>();
  for (const hit of lists.flat()) {
    const name = hit.provides ?? hit.package;
    const kept = found.get(name);
    if (!kept || preferred(hit, kept)) found.set(name, hit);
  }
  return found;
}

/** A real package over a provider of that name; then the newer version. */
function preferred(hit: ArchivePackage, kept: ArchivePackage): boolean {
  if ((hit.provides === undefined) !== (kept.provides === undefined)) return hit.provides === undefined;
  return compareDebianVersions(hit.version, kept.version) > 0;
}

/** The names in a Provides field: `pkg-config (= 1.8.1-4), pkgconf-bin` → pkg-config, pkgconf-bin. */
export function providedNames(provides: string | undefined): string[] {
  if (!provides) return [];
  return provides
    .split(',')
    .map((entry) => entry.trim().split(/[\s(]/)[0] ?? '')
    .filter(Boolean);
}

async function packagesOf(
  suite: DebianSuite,
  component: string,
  wanted: (name: string) => boolean,
  options: LookupOptions,
): Promise<ArchivePackage[]> {
  const path = `${component}/binary-amd64/Packages.xz`;
  const { result } = await readVerifiedIndex(suite, path, options, async (stanzas) => {
    const hits: ArchivePackage[] = [];
    for await (const stanza of stanzas) {
      const file = archivePackage(stanza, suite);
      if (!file) continue;
      if (wanted(stanza.package)) hits.push(file);
      if (options.virtual)
        for (const name of providedNames(stanza.provides)) if (wanted(name)) hits.push({ ...file, provides: name });
    }
    return hits;
  });
  return result;
}

/** Only a stanza with a Filename, SHA256 and Size can be downloaded and verified. */
function archivePackage(stanza: PackageStanza, suite: DebianSuite): ArchivePackage | undefined {
  const { filename, sha256, size } = stanza;
  if (!filename || !sha256 || size === undefined) return undefined;
  return {
    package: stanza.package,
    version: stanza.version,
    url: `${suite.archiveUrl}/${filename}`,
    sha256,
    size,
    suite: suite.name,
    ...(stanza.depends !== undefined ? { depends: stanza.depends } : {}),
  };
}
