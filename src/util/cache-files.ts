import { readdir, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The cache dir's file stores (downloaded packages, base image archives) are plain files whose modification
 * time says when kfarm last used them: `markUsed` on every use, so pruning by age keeps what runs still need.
 */
export async function markUsed(path: string): Promise<void> {
  const now = new Date();
  await utimes(path, now, now).catch(() => undefined);
}

export interface FileUsage {
  files: number;
  bytes: number;
}

/** Every regular file under `dir` (none when it does not exist), with its size and last use. */
async function filesUnder(dir: string): Promise<{ path: string; bytes: number; usedAt: number }[]> {
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  const found: { path: string; bytes: number; usedAt: number }[] = [];
  for (const name of names) {
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (info?.isFile()) found.push({ path, bytes: info.size, usedAt: info.mtimeMs });
  }
  return found;
}

export async function fileUsage(dir: string): Promise<FileUsage> {
  const files = await filesUnder(dir);
  return { files: files.length, bytes: files.reduce((sum, f) => sum + f.bytes, 0) };
}

/** Removes the files under `dir` not used for `olderThanMs` (all of them for 0); resolves with what went. */
export async function pruneFiles(dir: string, olderThanMs: number, now = Date.now()): Promise<FileUsage> {
  const gone: FileUsage = { files: 0, bytes: 0 };
  for (const file of await filesUnder(dir)) {
    if (now - file.usedAt < olderThanMs) continue;
    await rm(file.path, { force: true });
    gone.files++;
    gone.bytes += file.bytes;
  }
  return gone;
}
