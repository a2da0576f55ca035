import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { imagesDir } from '../util/paths.js';

/** Bumped when the way images are assembled changes in code rather than in the recipe files. */
const IMAGE_FORMAT = '1';

export interface Recipe {
  dir: string;
  /** Identifies the recipe's contents: images built from another recipe are not reused. */
  hash: string;
  basePackages: string[];
  installHeaders: string;
  installCompiler: string;
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
  const basePackages = (await readFile(dir + 'base-packages', 'utf8'))
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter(Boolean);
  return {
    dir,
    hash: hash.digest('hex').slice(0, 16),
    basePackages,
    installHeaders: await readFile(dir + 'install-headers.sh', 'utf8'),
    installCompiler: await readFile(dir + 'install-compiler.sh', 'utf8'),
  };
}
