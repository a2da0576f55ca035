import type { Engine } from '../engine/index.js';
import { runtimeHash } from '../dkms/runtime.js';
import type { Target } from '../model/result.js';
import { cacheKey, hashSourceTree, ResultCache } from './cache.js';
import type { FarmSettings } from './options.js';
import { resultOf, type TargetOutcome } from './results.js';

/**
 * The result cache as a build run uses it: keys from the source tree, the builder image's id, the kernel,
 * kfarm's in-container scripts and SOURCE_DATE_EPOCH; hits restored as `cached` outcomes; `built` outcomes
 * stored.
 */
export class TargetCache {
  private constructor(
    readonly engine: Engine,
    readonly results: ResultCache,
    readonly base: { source: string; runtime: string; sourceDateEpoch?: number },
  ) {}

  static async open(engine: Engine, settings: FarmSettings): Promise<TargetCache | undefined> {
    if (!settings.useCache) return undefined;
    const base = {
      source: await hashSourceTree(settings.source),
      runtime: await runtimeHash(),
      ...(settings.sourceDateEpoch === undefined ? {} : { sourceDateEpoch: settings.sourceDateEpoch }),
    };
    return new TargetCache(engine, new ResultCache(settings.cacheDir), base);
  }

  /** The key of this target's build in `image`, or undefined when the image is gone. */
  async key(image: string, target: Target): Promise<string | undefined> {
    const info = await this.engine.image(image);
    return info && cacheKey({ ...this.base, image: info.id, kernel: target.kernel, arch: target.arch });
  }

  async restore(
    key: string,
    target: Target,
    stageDir: string,
    time: { started: number; imageMs: number },
  ): Promise<TargetOutcome | undefined> {
    const hit = await this.results.restore(key, stageDir);
    if (!hit) return undefined;
    const result = resultOf(target, 'cached', Date.now() - time.started, {
      phases: { image: time.imageMs },
      ...hit.result,
    });
    return { result, plan: { packageName: hit.packageName, packageVersion: hit.packageVersion } };
  }

  /** Only builds that succeeded are worth keeping. */
  async store(key: string, stageDir: string, { result, plan }: TargetOutcome): Promise<void> {
    if (!plan || result.status !== 'built') return;
    const { artifacts, log, makeCommand } = result;
    await this.results.store(key, stageDir, {
      ...plan,
      result: { artifacts, ...(log ? { log } : {}), ...(makeCommand ? { makeCommand } : {}) },
    });
  }
}
