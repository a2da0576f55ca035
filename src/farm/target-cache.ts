import { createHash } from 'node:crypto';
import { runtimeHash } from '../dkms/runtime.js';
import { KfarmError, errorText, isKfarmError } from '../model/errors.js';
import type { Target } from '../model/result.js';
import { cacheKey, hashSourceTree, ResultCache } from './cache.js';
import type { FarmSettings } from './options.js';
import { resultOf, type TargetOutcome } from './results.js';

/**
 * The result cache as a build run uses it: keys from the source tree, the builder image's id, the kernel,
 * kfarm's in-container scripts and SOURCE_DATE_EPOCH; hits restored as `cached` outcomes; `built` outcomes
 * stored. Best effort: a cache that cannot be read is a miss and one that cannot be written is skipped, each
 * said once as a warning; neither fails a build.
 */
export class TargetCache {
  readonly #warned = new Set<string>();

  private constructor(
    readonly results: ResultCache,
    readonly base: { runtime: string; sourceDateEpoch?: number },
    /** The source part of the key for a release's targets: its tree's hash (and the override's). */
    readonly sourceOf: (release: string) => string,
    readonly warn: (message: string) => void,
  ) {}

  /** `keyedEpoch`: the SOURCE_DATE_EPOCH the caller chose, if any (a default one is not part of the key). */
  static async open(settings: FarmSettings, keyedEpoch?: number): Promise<TargetCache | undefined> {
    if (!settings.useCache) return undefined;
    const hashes = new Map<string, string>();
    for (const tree of settings.trees) {
      // A package's tree builds the version its directory is named after: the name is part of it.
      const packageDir = settings.packageDirOf(tree);
      hashes.set(tree, `${await hashTree(tree)}${packageDir === undefined ? '' : ` as ${packageDir}`}`);
    }
    // An override changes what dkms.conf says: it is part of the source as far as results go.
    const override = settings.confOverride === undefined ? '' : ` override ${sha256(settings.confOverride)}`;
    const base = {
      runtime: await runtimeHash(),
      ...(keyedEpoch === undefined ? {} : { sourceDateEpoch: keyedEpoch }),
    };
    // The --with-module trees are built into the same builder first: their contents shape the result too.
    const withOf = (release: string) => settings.withTreesOf(release).map((tree) => ` with ${hashes.get(tree) ?? ''}`);
    const sourceOf = (release: string) =>
      `${hashes.get(settings.treeOf(release)) ?? ''}${override}${withOf(release).join('')}`;
    return new TargetCache(new ResultCache(settings.cacheDir), base, sourceOf, (m) => settings.events.onWarning?.(m));
  }

  /** The key of this target's build in `image`, or undefined when the image is gone. */
  /** `builder` identifies the builder image and the headers' contents (ImageStore's BuilderEnv.id). */
  key(builder: string, target: Target): Promise<string | undefined> {
    const source = this.sourceOf(target.release);
    return Promise.resolve(
      cacheKey({ ...this.base, source, image: builder, kernel: target.kernel, arch: target.arch }),
    );
  }

  async restore(
    key: string,
    target: Target,
    stageDir: string,
    time: { started: number; imageMs: number },
  ): Promise<TargetOutcome | undefined> {
    const hit = await this.results.restore(key, stageDir).catch((error: unknown) => {
      if (isKfarmError(error, 'KFARM_OUTPUT_FAILED')) throw error;
      this.#warnOnce(`the result cache could not be read (${errorText(error)}); building instead`);
      return undefined;
    });
    if (!hit) return undefined;
    const result = resultOf(target, 'cached', Date.now() - time.started - time.imageMs, {
      phases: { image: time.imageMs },
      ...hit.result,
    });
    return { result, plan: { packageName: hit.packageName, packageVersion: hit.packageVersion } };
  }

  /** Only builds that succeeded are worth keeping. */
  async store(key: string, stageDir: string, { result, plan }: TargetOutcome): Promise<void> {
    if (!plan || result.status !== 'built') return;
    const { artifacts, log, makeCommand } = result;
    const entry = {
      ...plan,
      result: { artifacts, ...(log ? { log } : {}), ...(makeCommand ? { makeCommand } : {}) },
    };
    await this.results.store(key, stageDir, entry).catch((error: unknown) => {
      this.#warnOnce(
        `a build could not be stored in the result cache (${errorText(error)}); later runs build it again`,
      );
    });
  }

  #warnOnce(message: string): void {
    if (this.#warned.has(message)) return;
    this.#warned.add(message);
    this.warn(message);
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

function hashTree(tree: string): Promise<string> {
  return hashSourceTree(tree).catch((error: unknown) => {
    throw new KfarmError('KFARM_USAGE', `${tree}: cannot read the source tree (${errorText(error)})`, { cause: error });
  });
}
