import { randomBytes } from 'node:crypto';
import { access, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { execa } from 'execa';
import type { Engine } from '../engine/index.js';
import { isKfarmError } from '../model/errors.js';
import { markUsed } from '../util/cache-files.js';

/**
 * Base images kept as zstd-compressed root filesystems in the cache dir, so a machine whose cache dir was
 * restored (a CI cache) gets its base images back in seconds instead of bootstrapping them again. zstd, not
 * gzip: it compresses a 390 MB root filesystem in about a second where gzip -1 takes six; Docker 20.10 cannot
 * import zstd itself, so kfarm decompresses on its own side (which also keeps remote engines working).
 * Keeping an archive is best effort: a full or read-only cache dir, or no zstd, only means no archive.
 */
export function rootfsArchivePath(dir: string, release: string, recipeHash: string): string {
  return join(dir, `debian-${release}-${recipeHash.slice(0, 16)}.tar.zst`);
}

/** Writes what it is given to `path` through `zstd`; `keep` publishes the file (atomically), `drop` discards it. */
export interface ArchiveWriter {
  input: Writable;
  keep(): Promise<void>;
  drop(): Promise<void>;
}

export async function archiveWriter(path: string): Promise<ArchiveWriter | undefined> {
  const temp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  if (!(await succeeds(mkdir(dirname(path), { recursive: true })))) return undefined;
  const zstd = execa('zstd', ['-q', '-1', '-T0', '-f', '-o', temp], {
    stdin: 'pipe',
    stdout: 'ignore',
    stderr: 'ignore',
  });
  const ended = succeeds(zstd);
  const input = new PassThrough();
  // A zstd that cannot write (full disk) or does not exist stops taking input: the bootstrap goes on without it,
  // its data now discarded (a stream nobody reads would hold up mmdebstrap's output for the import too).
  const discard = () => {
    input.unpipe();
    input.resume();
  };
  zstd.stdin.on('error', discard);
  void ended.then((ok) => ok || discard());
  input.pipe(zstd.stdin);
  return {
    input,
    keep: async () => {
      input.end();
      if ((await ended) && (await succeeds(rename(temp, path)))) await dropOthers(path);
      else await rm(temp, { force: true });
    },
    drop: async () => {
      zstd.kill();
      await ended;
      await rm(temp, { force: true });
    },
  };
}

/** Archives of the same release made by other recipes are of no further use. */
async function dropOthers(path: string): Promise<void> {
  const prefix = basename(path).replace(/-[0-9a-f]{16}\.tar\.zst$/, '-');
  const names = await readdir(dirname(path)).catch(() => [] as string[]);
  for (const name of names) {
    if (name !== basename(path) && name.startsWith(prefix) && /-[0-9a-f]{16}\.tar\.zst$/.test(name))
      await rm(join(dirname(path), name), { force: true });
  }
}

/**
 * Imports an archived root filesystem as `ref`; resolves false when there is none or it cannot be read (no
 * zstd), and removes it when it is damaged (zstd's checksum) or the engine refuses it, so the caller
 * bootstraps instead. Imported under a temporary name and tagged only once the whole archive was read and
 * checked. A lost engine or an abort is thrown, not taken for a damaged archive.
 */
export async function restoreRootfs(
  engine: Engine,
  spec: { path: string; ref: string; labels: Record<string, string>; signal?: AbortSignal; onRestore?: () => void },
): Promise<boolean> {
  if (!(await succeeds(access(spec.path)))) return false;
  spec.onRestore?.();
  const partial = `${spec.ref}-restore-${engine.session.id}`;
  const zstd = execa('zstd', ['-q', '-d', '-c', spec.path], {
    stdout: 'pipe',
    stderr: 'ignore',
    buffer: false,
    ...(spec.signal ? { cancelSignal: spec.signal } : {}),
  });
  const decompressed = zstd.then(
    () => 'ok' as const,
    (error: { code?: string }) => (error.code === 'ENOENT' ? ('no zstd' as const) : ('damaged' as const)),
  );
  const rootfs = new PassThrough();
  zstd.stdout?.on('error', (error) => rootfs.destroy(error));
  zstd.stdout?.pipe(rootfs);
  // A zstd that could not start, or stopped on a damaged frame, ends the import's input with an error.
  void decompressed.then((read) => read === 'ok' || rootfs.destroy(new Error(`zstd: ${read}`)));
  try {
    const imported = await engine.importImage(rootfs, partial, spec.labels, spec.signal).then(
      () => true,
      (error: unknown) => {
        zstd.kill();
        if (spec.signal?.aborted || isKfarmError(error, 'KFARM_ENGINE_UNAVAILABLE')) throw error;
        return false;
      },
    );
    const read = await decompressed;
    if (imported && read === 'ok') {
      await engine.tagImage(partial, spec.ref);
      await markUsed(spec.path);
      return true;
    }
    if (read !== 'no zstd') await rm(spec.path, { force: true });
    return false;
  } finally {
    await engine.removeImage(partial, { force: true }).catch(() => undefined);
  }
}

/** Whether `work` resolved (its value and its error are of no interest). */
function succeeds(work: Promise<unknown>): Promise<boolean> {
  return work.then(
    () => true,
    () => false,
  );
}
