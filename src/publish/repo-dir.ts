import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { KfarmError } from '../model/errors.js';
import { inside } from '../util/paths.js';
import { writingTo } from '../util/output-errors.js';
import { claimDir, sweepStaleDirs } from '../util/stale-dirs.js';
import { withLock } from '../util/lock.js';

/**
 * A repository directory as kfarm keeps it: package files in a pool that only grows during a publish, and the
 * indexes (`dists/` for apt, `repodata/` for yum) as a symbolic link to one complete, signed generation under
 * `<name>.d/<id>/`. A publish writes the new generation beside the old and switches the link with one rename, so
 * a reader sees the old repository or the new one, never a mix; files no generation lists go only after that.
 */
export class RepoDir {
  constructor(readonly root: string) {}

  /** Runs `work` holding the repository's lock (one publish at a time), after sweeping dead runs' staging dirs. */
  async locked<T>(links: string[], work: () => Promise<T>): Promise<T> {
    await writingTo(this.root, () => mkdir(this.root, { recursive: true }));
    for (const link of links) await this.#checkLink(link);
    return withLock(this.root, '.kfarm-publish', async () => {
      await sweepStaleDirs(this.root);
      return work();
    });
  }

  /** A fresh staging directory in the repository (same file system, so it can be renamed into place). */
  async staging(): Promise<string> {
    const dir = join(this.root, `.kfarm-tmp-${randomBytes(6).toString('hex')}`);
    await writingTo(dir, () => mkdir(dir, { recursive: true }));
    await claimDir(dir);
    return dir;
  }

  /**
   * Whether `data` is new at `rel` in the repository: false when the same bytes are there already; other bytes
   * under that name are an error (apt and dnf cache packages by name and version: one is never replaced in place).
   */
  async isNew(rel: string, data: Buffer, from: string): Promise<boolean> {
    const path = inside(this.root, rel);
    const old = await readFile(path).catch(() => undefined);
    if (old === undefined) return true;
    if (old.equals(data)) return false;
    throw new KfarmError(
      'KFARM_USAGE',
      `${from}: ${path} is already published with other contents (a package of the same name and version is ` +
        'never replaced: give the module a new version, or remove the file from the repository)',
    );
  }

  /** Moves the files staged under `staged/<rel>` to `<rel>` in the repository: new pool files, before the switch. */
  async commitFiles(staged: string, rels: string[]): Promise<void> {
    for (const rel of rels) {
      const path = inside(this.root, rel);
      await writingTo(path, async () => {
        await mkdir(dirname(path), { recursive: true });
        await rename(join(staged, rel), path);
      });
    }
  }

  /** Moves a complete generation in as `<link>.d/<id>` and points `<link>` at it; the old generations go. */
  async switchTo(link: string, generation: string, id: string): Promise<void> {
    const store = join(this.root, `${link}.d`);
    const target = join(store, id);
    const current = await readlink(join(this.root, link)).catch(() => undefined);
    if (current === `${link}.d/${id}`) return;
    await writingTo(store, () => mkdir(store, { recursive: true }));
    await rm(target, { recursive: true, force: true });
    await writingTo(target, () => rename(generation, target));
    const temp = join(this.root, `.${link}.kfarm-new-${process.pid}`);
    await rm(temp, { force: true });
    await writingTo(join(this.root, link), async () => {
      await symlink(`${link}.d/${id}`, temp);
      await rename(temp, join(this.root, link));
    });
    for (const old of await readdir(store))
      if (old !== id) await rm(join(store, old), { recursive: true, force: true });
  }

  /** Removes the files of `dir` (relative) that are not in `keep`. */
  async removeUnlisted(dir: string, keep: ReadonlySet<string>): Promise<string[]> {
    const path = inside(this.root, dir);
    const removed: string[] = [];
    for (const name of await readdir(path).catch(() => [] as string[])) {
      if (keep.has(name) || name.startsWith('.')) continue;
      await rm(join(path, name), { force: true });
      removed.push(name);
    }
    return removed;
  }

  /** A repository index link must be kfarm's (a symbolic link) or absent: never a directory someone else made. */
  async #checkLink(link: string): Promise<void> {
    const info = await lstat(join(this.root, link)).catch(() => undefined);
    if (info && !info.isSymbolicLink())
      throw new KfarmError(
        'KFARM_USAGE',
        `${join(this.root, link)}: exists and is not kfarm's (a repository kfarm publishes keeps it as a link)`,
      );
  }
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}
