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
