import { KfarmError } from '../model/errors.js';
import type { BuildDeps } from '../model/target.js';
import { lookupPackages, type LookupOptions } from './debian-lookup.js';
import { defaultSuiteNames, releaseComponents } from './debian-releases.js';

/** A Debian package name (Policy 5.6.1). */
export const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;
/** The same, optionally with an architecture qualifier apt accepts (`:amd64`). */
const QUALIFIED_NAME = new RegExp(`${PACKAGE_NAME.source.slice(0, -1)}(:[a-z0-9-]+)?$`);

/** The names in a `--build-deps` value or matrix entry: separated by blanks or commas. */
export function splitPackageList(text: string): string[] {
  return text.split(/[\s,]+/).filter(Boolean);
}

/**
 * Checks a release's build dependencies against its indexes (every component: builders' apt sees them all) and
 * records the version each has there. A name that is neither a package nor a virtual package of the release is
 * the user's error: `where` names the flag or matrix file line it came from.
 */
export async function resolveBuildDeps(
  release: string,
  lists: ReadonlyArray<{ names: readonly string[]; where: string }>,
  options: LookupOptions = {},
): Promise<BuildDeps | undefined> {
  for (const { names, where } of lists) {
    const bad = names.find((name) => !QUALIFIED_NAME.test(name));
    if (bad) throw new KfarmError('KFARM_CONFIG_INVALID', `${where}: ${JSON.stringify(bad)} is not a package name`);
  }
  const packages = [...new Set(lists.flatMap((l) => l.names))].sort();
  if (packages.length === 0) return undefined;
  const bare = packages.map(withoutArch);
  const components = releaseComponents(release);
  const found = await lookupPackages(release, bare, { ...options, components, virtual: true });
  for (const { names, where } of lists) {
    const missing = names.map(withoutArch).filter((name) => !found.has(name));
    if (missing.length === 0) continue;
    const suites = defaultSuiteNames(release, options);
    const what = missing.length === 1 ? `no package ${missing[0]}` : `no packages ${missing.join(', ')}`;
    throw new KfarmError('KFARM_CONFIG_INVALID', `${where}: ${what} in debian/${release} (${suites})`);
  }
  const versions = bare.map((name) => {
    const hit = found.get(name);
    return hit?.provides ? `${name}=virtual:${hit.package}=${hit.version}` : `${name}=${hit?.version ?? ''}`;
  });
  // A virtual name is installed as the provider the index has (apt would ask which one when there are several).
  const install = packages.map((name, i) => {
    const hit = found.get(bare[i] as string);
    return hit?.provides ? hit.package : name;
  });
  return { packages: [...new Set(install)].sort(), versions };
}

function withoutArch(name: string): string {
  return name.replace(/:.*/, '');
}
