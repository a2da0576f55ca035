import { isAbsolute, relative, resolve, sep } from 'node:path';
import { KfarmError } from '../model/errors.js';
import { fileURLToPath } from 'node:url';

/** Top-level `images/` of the kfarm package: image recipes and the scripts kfarm runs inside builders. */
export const imagesDir = fileURLToPath(new URL('../../images/', import.meta.url));

/** The kfarm package's root directory (package.json, matrix/, images/). */
export const packageDir = fileURLToPath(new URL('../../', import.meta.url));

/** A path as the user would recognise it: relative to the working directory when inside it. */
export function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}

/**
 * `root/rel`, proven to stay inside `root` (no `..`, no absolute `rel`); anything else is KFARM_OUTPUT_UNSAFE.
 * Every path kfarm builds from names it did not choose goes through here before it is written.
 */
export function inside(root: string, rel: string): string {
  const base = resolve(root);
  const path = resolve(base, rel);
  const back = relative(base, path);
  if (isAbsolute(rel) || back === '' || back === '..' || back.startsWith(`..${sep}`) || isAbsolute(back)) {
    throw new KfarmError('KFARM_OUTPUT_UNSAFE', `${JSON.stringify(rel)} would leave ${root}`);
  }
  return path;
}
