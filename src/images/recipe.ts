import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { imagesDir } from '../util/paths.js';

/** Bumped when the way images are assembled changes in code rather than in the recipe files. */
const IMAGE_FORMAT = '1';

export interface Recipe {
  dir: string;
  /** Identifies the recipe's contents: images built from another recipe are not reused. */
  hash: string;
  /**
   * Identifies what a base image is made of (its package list) and nothing else, so a change to the headers
   * script re-makes the thin headers layers, not the bases and tool images that take minutes.
   */
  baseHash: string;
  /** The base image's packages for a release (base-packages lines may name the releases they are for). */
  basePackages: (release: string) => string[];
  /** Unpacks one headers .deb into an engine volume (headers-volumes.ts). */
  unpackPackage: string;
  /** Identifies unpack-package.sh: volumes unpacked by another one are not reused. */
  unpackHash: string;
  installPackages: string;
}

export async function loadRecipe(family: string): Promise<Recipe> {
  const dir = `${imagesDir}${family}/`;
  const hash = createHash('sha256').update(IMAGE_FORMAT);
  for (const name of (await readdir(dir)).sort()) {
    if (name.endsWith('.md')) continue;
    hash
      .update(name)
      .update('\0')
      .update(await readFile(dir + name))
      .update('\0');
  }
  const basePackageFile = await readFile(dir + 'base-packages', 'utf8');
  const baseHash = createHash('sha256').update(IMAGE_FORMAT).update('\0').update(basePackageFile);
  const entries = basePackageFile
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter(Boolean)
    .map((line) => line.split(/\s+/));
  const basePackages = (release: string) =>
    entries.filter(([, ...releases]) => forRelease(releases, release)).map(([name]) => name as string);
  const unpackPackage = await readFile(dir + 'unpack-package.sh', 'utf8');
  return {
    dir,
    unpackPackage,
    unpackHash: createHash('sha256').update(IMAGE_FORMAT).update('\0').update(unpackPackage).digest('hex').slice(0, 16),
    hash: hash.digest('hex').slice(0, 16),
    baseHash: baseHash.digest('hex').slice(0, 16),
    basePackages,
    installPackages: await readFile(dir + 'install-packages.sh', 'utf8'),
  };
}

/** `pkg` is for every release, `pkg bullseye` only for bullseye, `pkg !bullseye` for every release but bullseye. */
function forRelease(releases: string[], release: string): boolean {
  if (releases.length === 0) return true;
  const excluded = releases.filter((r) => r.startsWith('!')).map((r) => r.slice(1));
  const only = releases.filter((r) => !r.startsWith('!'));
  return !excluded.includes(release) && (only.length === 0 || only.includes(release));
}
