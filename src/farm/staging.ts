import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { KfarmError } from '../model/errors.js';
import { kernelTreeDir } from '../dkms/paths.js';
import type { Target, TargetResult } from '../model/result.js';
import { makeDirs, writingTo } from '../util/output-errors.js';
import { inside } from '../util/paths.js';
import { claimDir, sweepStaleDirs } from '../util/stale-dirs.js';
import type { TargetOutcome } from './results.js';

/** What the staged outcomes became once placed: results with paths relative to `out`. */
export interface Placed {
  results: TargetResult[];
  notRun: string[];
  module: string;
  version: string;
}

/**
 * Where a run assembles its output before anything appears in `out`: `<out>/.kfarm-tmp-<session>/<index>/`
 * per target. Each kernel's directory is renamed into the DKMS tree when the run ends, so a reader sees the
 * old tree or the new one, never half of one; a run stopped by bad input leaves nothing behind.
 */
export class Staging {
  private constructor(
    readonly out: string,
    readonly dir: string,
    readonly outExisted: boolean,
  ) {}

  static async open(out: string, session: string): Promise<Staging> {
    const outExisted = await checkOutDir(out);
    const dir = join(out, `.kfarm-tmp-${session}`);
    await writingTo(out, async () => {
      await makeDirs(dir);
      await claimDir(dir);
    });
    await sweepStaleDirs(out);
    return new Staging(out, dir, outExisted);
  }

  /** A fresh, empty directory for target `index`. */
  async stageDir(index: number): Promise<string> {
    const dir = join(this.dir, String(index));
    await writingTo(dir, () => mkdir(dir));
    return dir;
  }

  /** Moves every staged kernel directory into the DKMS tree, in target order; unfinished targets are `notRun`. */
  async place(outcomes: readonly (TargetOutcome | undefined)[], targets: readonly Target[]): Promise<Placed> {
    const placed: Placed = { results: [], notRun: [], module: '', version: '' };
    for (const [index, target] of targets.entries()) {
      const outcome = outcomes[index];
      if (!outcome) {
        placed.notRun.push(target.id);
        continue;
      }
      if (outcome.plan) {
        placed.module ||= outcome.plan.packageName;
        placed.version ||= outcome.plan.packageVersion;
        // Each release's own package (a `debian:` source) may be another version: the target says which.
        if (outcome.plan.packageVersion !== placed.version) outcome.result.version = outcome.plan.packageVersion;
        await this.#placeOne(index, outcome);
      }
      placed.results.push(outcome.result);
    }
    return placed;
  }

  async #placeOne(index: number, { result, plan }: TargetOutcome): Promise<void> {
    const stageDir = join(this.dir, String(index));
    if (!plan || (await readdir(stageDir).catch(() => [])).length === 0) return;
    const rel = kernelTreeDir(plan, result.kernel, result.arch);
    const dest = inside(this.out, rel);
    await writingTo(dest, () => replaceDir(stageDir, dest));
    result.artifacts = result.artifacts.map((a) => join(rel, a));
    if (result.log) result.log = join(rel, result.log);
  }

  /** Removes the staging directory (and `out` itself when this run created it and it is empty). */
  async discard(): Promise<void> {
    await this.close();
    if (!this.outExisted) await rmdir(this.out).catch(() => undefined);
  }

  async close(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * `out` must be a directory kfarm may fill: not `/` (a build output is never the root of the file system),
 * not a file. Resolves with whether it exists already.
 */
async function checkOutDir(out: string): Promise<boolean> {
  if (resolve(out) === '/') throw new KfarmError('KFARM_USAGE', `--out ${out}: refusing to write a build into /`);
  const info = await stat(out).catch(() => undefined);
  if (info && !info.isDirectory()) throw new KfarmError('KFARM_USAGE', `--out ${out}: not a directory`);
  return info !== undefined;
}

/** Replaces a directory with another by rename: never half there. */
async function replaceDir(from: string, dest: string): Promise<void> {
  await mkdir(join(dest, '..'), { recursive: true });
  const old = `${dest}.old-${randomBytes(4).toString('hex')}`;
  const hadOld = await rename(dest, old).then(
    () => true,
    () => false,
  );
  await rename(from, dest);
  if (hadOld) await rm(old, { recursive: true, force: true });
}
