import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { KfarmError } from '../model/errors.js';

/** Errors that say the place kfarm writes to is unusable (not that kfarm or the input is wrong). */
const UNWRITABLE: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a path component is not a directory',
  EISDIR: 'is a directory',
  EIO: 'input/output error',
  EFBIG: 'file too large',
};

/** KFARM_OUTPUT_FAILED (exit 2) naming the path, when `error` is one of those; else the error as it is. */
export function outputFailure(path: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (error instanceof KfarmError || code === undefined || !(code in UNWRITABLE)) return error;
  return new KfarmError('KFARM_OUTPUT_FAILED', `cannot write ${path}: ${UNWRITABLE[code]}`, { cause: error });
}

/** Runs a write and maps an unusable destination to KFARM_OUTPUT_FAILED naming `path`. */
export async function writingTo<T>(path: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (error) {
    throw outputFailure(path, error);
  }
}

/**
 * `mkdir -p` whose failure says why: Node's recursive mkdir reports ENOENT when a parent cannot be made on a
 * read-only file system, so each missing level is made on its own and its own error is the one thrown.
 */
export async function makeDirs(path: string): Promise<void> {
  const missing: string[] = [];
  for (let dir = resolve(path); !(await exists(dir)); dir = dirname(dir)) {
    missing.unshift(dir);
    if (dir === dirname(dir)) break;
  }
  for (const dir of missing) {
    await mkdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  }
}

function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
