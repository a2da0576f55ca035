import { homedir } from 'node:os';
import { join } from 'node:path';

/** kfarm's cache root: the option, else `KFARM_CACHE_DIR`, else `${XDG_CACHE_HOME:-~/.cache}/kfarm`. */
export function cacheRoot(override?: string, env: NodeJS.ProcessEnv = process.env): string {
  return (
    override ??
    nonEmpty(env['KFARM_CACHE_DIR']) ??
    join(nonEmpty(env['XDG_CACHE_HOME']) ?? join(homedir(), '.cache'), 'kfarm')
  );
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
