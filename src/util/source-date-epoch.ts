import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { KfarmError } from '../model/errors.js';

/**
 * The timestamp every archive writer stamps on its members (https://reproducible-builds.org/specs/source-date-epoch/):
 * `SOURCE_DATE_EPOCH` from the environment when set (a non-negative whole number of seconds; anything else is
 * an error naming the variable and the value); else, when a source tree is known, its last git commit time
 * (`git -C <src> log -1 --format=%ct -- .`: the last commit touching that tree, also when it is a subdirectory
 * of a larger repository) when git knows it, else the newest mtime of its files (`.git` left out). Undefined
 * when there is neither.
 */
export async function resolveSourceDateEpoch(
  source?: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number | undefined> {
  const raw = env['SOURCE_DATE_EPOCH'];
  if (raw !== undefined) return parseSourceDateEpoch(raw);
  if (source === undefined) return undefined;
  const git = await execa('git', ['-C', source, 'log', '-1', '--format=%ct', '--', '.'], {
    reject: false,
    stdin: 'ignore',
  }).catch(() => undefined);
  const committed = git?.exitCode === 0 ? git.stdout.trim() : '';
  if (/^\d+$/.test(committed)) return Number(committed);
  return newestMtime(source);
}

export function parseSourceDateEpoch(raw: string, name = 'SOURCE_DATE_EPOCH'): number {
  const value = Number(raw);
  // 2^33 s is year 2242, well past any ustar/ar/rpm timestamp field; negative and fractional values are not in the spec.
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value >= 2 ** 33) {
    throw new KfarmError(
      'KFARM_USAGE',
      `${name}=${JSON.stringify(raw)}: expected a whole number of seconds since 1970-01-01 UTC`,
    );
  }
  return value;
}

/** The newest modification time (whole seconds) of the regular files and symlinks under `root`, skipping `.git`. */
export async function newestMtime(root: string): Promise<number> {
  let newest = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.name === '.git') continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else newest = Math.max(newest, Math.floor((await lstat(path)).mtimeMs / 1000));
    }
  };
  await walk(root);
  return newest;
}
