import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

const OWNER = '.kfarm-owner';

/** Marks a temporary directory as this process's, so a later run can tell when its owner is gone. */
export async function claimDir(dir: string): Promise<void> {
  await writeFile(join(dir, OWNER), JSON.stringify({ pid: process.pid, host: hostname() }));
}

/**
 * Removes the `.kfarm-tmp-*` directories in `parent` left by kfarm runs that are gone (killed, a double
 * Ctrl-C, a power cut): those whose owner ran on this host with a pid that no longer runs. Live runs' directories,
 * and those of other hosts (a shared file system), are left alone. Resolves with how many were removed.
 */
export async function sweepStaleDirs(parent: string): Promise<number> {
  const names = await readdir(parent).catch(() => [] as string[]);
  let removed = 0;
  for (const name of names.filter((n) => n.startsWith('.kfarm-tmp-'))) {
    const dir = join(parent, name);
    if (!(await ownerGone(dir))) continue;
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    removed++;
  }
  return removed;
}

async function ownerGone(dir: string): Promise<boolean> {
  const owner = await readFile(join(dir, OWNER), 'utf8')
    .then((text) => JSON.parse(text) as { pid?: unknown; host?: unknown })
    .catch(() => undefined);
  if (!owner || owner.host !== hostname() || typeof owner.pid !== 'number') return false;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
