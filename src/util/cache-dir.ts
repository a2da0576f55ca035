import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KfarmError } from '../model/errors.js';

/** kfarm's cache root: the option, else `KFARM_CACHE_DIR`, else `${XDG_CACHE_HOME:-~/.cache}/kfarm`. */
export function cacheRoot(override?: string, env: NodeJS.ProcessEnv = process.env): string {
  return (
    override ??
    nonEmpty(env['KFARM_CACHE_DIR']) ??
    join(nonEmpty(env['XDG_CACHE_HOME']) ?? join(homedir(), '.cache'), 'kfarm')
  );
}

/** Whether the user named the cache directory (option or KFARM_CACHE_DIR), rather than kfarm's default. */
export function cacheDirChosen(override?: string, env: NodeJS.ProcessEnv = process.env): boolean {
  return override !== undefined || nonEmpty(env['KFARM_CACHE_DIR']) !== undefined;
}

/**
 * Proves the cache directory can be used: it is (or can be made) a directory, and a file can be written
 * and removed in it. Resolves with why not (one line), or undefined when it is usable.
 */
export async function cacheDirProblem(dir: string): Promise<string | undefined> {
  const info = await stat(dir).catch(() => undefined);
  if (info && !info.isDirectory()) return 'not a directory';
  const probe = join(dir, `.kfarm-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await mkdir(dir, { recursive: true });
    await writeFile(probe, '');
    await rm(probe, { force: true });
    return undefined;
  } catch (error) {
    return `cannot write there (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
  }
}

/**
 * The cache directory a command will use: a directory the user chose and kfarm cannot use is a usage error
 * (exit 2) before anything runs; kfarm's own default that is unusable means running without a cache, said
 * once through `warn`.
 */
export async function usableCacheDir(
  override: string | undefined,
  warn: (message: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  const dir = cacheRoot(override, env);
  const problem = await cacheDirProblem(dir);
  if (problem === undefined) return dir;
  const named = override !== undefined ? `--cache-dir ${dir}` : `KFARM_CACHE_DIR=${dir}`;
  if (cacheDirChosen(override, env)) throw new KfarmError('KFARM_USAGE', `${named}: ${problem}`);
  warn(`the cache directory ${dir} is unusable (${problem}); running without a cache`);
  return undefined;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
