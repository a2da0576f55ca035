import { setMaxListeners } from 'node:events';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { firstCompilerError } from '../dkms/compiler-errors.js';
import { buildDirOf } from '../dkms/paths.js';
import { EngineTimeouts, type Engine } from '../engine/index.js';
import { errorText, isKfarmError } from '../model/errors.js';
import { applyKnownFailing, knownFailure } from '../model/known-failing.js';
import { badStatuses, type FirstError, type Target } from '../model/result.js';
import { ImageStore, type BuilderEnv } from '../images/image-store.js';
import { BuilderPool } from './builder-pool.js';
import { MAX_LOG_BYTES, readCapped } from '../util/read-file.js';
import { BuildJob, NotScheduled, type DkmsConfRef } from './build-job.js';
import { TargetCache } from './target-cache.js';
import type { FarmSettings } from './options.js';
import { failedResult, type TargetOutcome } from './results.js';
import type { Staging } from './staging.js';

/**
 * Runs every target of a build through its steps — builder environment (image and headers volumes) → cache →
 * prepare (lease a warm builder, reset it, evaluate) → compile (build, copy out) → store. Environments are
 * asked for every target at once (the ImageStore de-duplicates and limits the preparation work itself); the
 * builder pool (one builder per build slot) orders the targets waiting for a builder by the matrix. A target
 * goes on as soon as its own environment is ready, so builds of ready kernels overlap with preparing the others.
 *
 * One target's failure is its result. A broken dkms.conf or a lost engine concerns every target: it stops
 * the run and is kept in `fatal`.
 */
export class Scheduler {
  readonly outcomes: (TargetOutcome | undefined)[];
  fatal: unknown;
  readonly #controller = new AbortController();
  readonly signal: AbortSignal;
  readonly #images: ImageStore;
  readonly #buildQueue: PQueue;
  readonly #builders: BuilderPool;
  #stopScheduling = false;

  constructor(
    readonly engine: Engine,
    readonly settings: FarmSettings,
    readonly staging: Staging,
    readonly cache: TargetCache | undefined,
    /** A source tree's dkms.conf, as the user names it. */
    readonly confLabel: (tree: string) => string,
    signal?: AbortSignal,
  ) {
    this.outcomes = new Array<TargetOutcome | undefined>(settings.targets.length);
    this.signal = signal ? AbortSignal.any([signal, this.#controller.signal]) : this.#controller.signal;
    // Every queued target listens to it (p-queue, its build): many listeners on a large matrix, not a leak.
    setMaxListeners(0, this.signal);
    this.#images = new ImageStore(engine, {
      logDir: settings.logDir,
      packageDir: join(settings.cacheDir, 'packages'),
      rootfsDir: join(settings.cacheDir, 'images'),
      sources: settings.sources,
      events: settings.events,
      jobs: settings.imageJobs,
    });
    this.#buildQueue = new PQueue({ concurrency: settings.concurrency });
    this.#builders = new BuilderPool(engine, settings, settings.concurrency);
  }

  async runAll(): Promise<void> {
    try {
      await Promise.all(this.settings.targets.map((target, index) => this.#runTarget(target, index)));
    } finally {
      this.#builders.close();
    }
  }

  /** Stops the run for everyone (a lost engine, a broken dkms.conf); the first reason wins. */
  stop(error: unknown): void {
    this.fatal ??= error;
    this.#controller.abort(error);
  }

  async #runTarget(target: Target, index: number): Promise<void> {
    this.settings.events.onTargetStart?.(target);
    const started = Date.now();
    // Until this target knows whether it builds, and with which kernel, a builder for its release waits a little.
    let known = false;
    const isKnown = () => {
      if (!known) this.#builders.resolved();
      known = true;
    };
    this.#builders.announce();
    const env = await this.#image(target, index, started);
    if (env === undefined || this.#stopScheduling || this.signal.aborted) return isKnown();
    const imageMs = Date.now() - started;
    try {
      const stageDir = await this.staging.stageDir(index);
      const key = this.cache ? await this.cache.key(env.id, target) : undefined;
      const hit = key ? await this.cache?.restore(key, target, stageDir, { started, imageMs }) : undefined;
      if (hit) return this.#record(index, hit);
      this.#builders.expect(env);
      isKnown();
      // Builders are the limit: a target waits for one in the pool, where the matrix order decides.
      await this.#build(target, index, { env, stageDir, key, imageMs });
    } catch (error) {
      this.#builders.forget(env);
      await this.#failed(target, index, error, imageMs);
    } finally {
      isKnown();
    }
  }

  async #image(target: Target, index: number, started: number): Promise<BuilderEnv | undefined> {
    this.settings.events.onTargetPhase?.(target, 'image');
    try {
      return await this.#images.headers(target, this.signal);
    } catch (error) {
      await this.#failed(target, index, error, Date.now() - started);
      return undefined;
    }
  }

  /** How a job names a tree's dkms.conf, and the tree's directory name when a package kept it in /usr/src. */
  #conf(tree: string): DkmsConfRef {
    const packageDir = this.settings.packageDirOf(tree);
    return { confLabel: this.confLabel(tree), ...(packageDir === undefined ? {} : { packageDir }) };
  }

  async #build(
    target: Target,
    index: number,
    job: { env: BuilderEnv; stageDir: string; key: string | undefined; imageMs: number },
  ): Promise<void> {
    const { env } = job;
    if (this.signal.aborted || this.#stopScheduling) return this.#builders.forget(env);
    try {
      const outcome = await new BuildJob(target, {
        settings: this.settings,
        builders: {
          lease: (signal) => this.#builders.lease(env, signal, -index),
          release: (builder, clean) => this.#builders.release(builder, clean),
        },
        ...this.#conf(this.settings.treeOf(target.release)),
        withModules: this.settings.withTreesOf(target.release).map((tree) => this.#conf(tree)),
        image: env.image,
        stageDir: job.stageDir,
        signal: this.signal,
        onPhase: (phase) => this.settings.events.onTargetPhase?.(target, phase),
        buildSlot: (work) => this.#slot(work, index),
        onCompiled: (ok) => {
          // Decided before the slot is released, so with --fail-fast no build starts after a failure.
          if (!ok && this.settings.failFast && !knownFailure(target, this.settings.knownFailing))
            this.#stopScheduling = true;
        },
      }).run();
      // Waiting for the builder image and headers is a phase of its own, not the target's duration: a hello
      // module that compiles in 4 s is not "built in 141 s" because a base image was bootstrapped meanwhile.
      outcome.result.phases = { image: job.imageMs, ...outcome.result.phases };
      await this.#annotate(outcome, job.stageDir);
      if (job.key) await this.cache?.store(job.key, job.stageDir, outcome);
      this.#record(index, outcome);
    } catch (error) {
      await this.#failed(target, index, error, job.imageMs);
    }
  }

  #slot<T>(work: () => Promise<T>, index: number): Promise<T> {
    const run = async () => {
      if (this.#stopScheduling) throw new NotScheduled();
      return work();
    };
    // Among targets waiting for a build slot, the matrix order wins.
    return this.#buildQueue.add(run, { signal: this.signal, priority: -index });
  }

  /** A failed target carries the first compiler error of its make.log. */
  async #annotate(outcome: TargetOutcome, stageDir: string): Promise<void> {
    const { result, plan } = outcome;
    if (!badStatuses.includes(result.status) || !result.log || !plan) return;
    const firstError = await firstErrorOf(join(stageDir, result.log), buildDirOf(plan));
    if (firstError) result.firstError = firstError;
  }

  #record(index: number, outcome: TargetOutcome): void {
    outcome.result = applyKnownFailing(outcome.result, this.settings.knownFailing);
    this.outcomes[index] = outcome;
    this.settings.events.onTargetDone?.(outcome.result);
    // Queued builds see the flag and return at once (p-queue's clear() would leave their promises pending).
    if (this.settings.failFast && badStatuses.includes(outcome.result.status)) this.#stopScheduling = true;
  }

  /**
   * An error out of a target's steps: nothing when the run is stopping anyway; the run's end when it is a
   * broken dkms.conf or a lost engine (also when an odd failure turns out to be the engine going away);
   * otherwise this target's `failed` result.
   */
  async #failed(target: Target, index: number, error: unknown, durationMs: number): Promise<void> {
    if (this.signal.aborted || error instanceof NotScheduled) return;
    if (runStopping(error)) return this.stop(error);
    const lost = await this.engine.ping(EngineTimeouts.cleanup).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    if (lost !== undefined) return this.stop(lost);
    this.#record(index, { result: failedResult(target, errorText(error), durationMs) });
  }
}

/**
 * Errors that concern every target, not the one that met them: the user's dkms.conf, the engine, and the
 * output directory (a full disk fails everyone).
 */
function runStopping(error: unknown): boolean {
  return (
    isKfarmError(error, 'KFARM_CONFIG_INVALID') ||
    isKfarmError(error, 'KFARM_ENGINE_UNAVAILABLE') ||
    isKfarmError(error, 'KFARM_OUTPUT_FAILED')
  );
}

async function firstErrorOf(log: string, buildDir: string): Promise<FirstError | undefined> {
  const text = await readCapped(log, MAX_LOG_BYTES);
  return text === undefined ? undefined : firstCompilerError(text, { buildDir });
}
