import { randomBytes } from 'node:crypto';
import { rename, rm, writeFile } from 'node:fs/promises';
import { writingTo } from './output-errors.js';

/**
 * Writes a file so readers see the old contents or the new, never a half-written one: a temporary file
 * beside it, then one rename. A destination that cannot be written is KFARM_OUTPUT_FAILED naming it.
 */
export async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  const temp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writingTo(path, async () => {
    try {
      await writeFile(temp, data);
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  });
}
