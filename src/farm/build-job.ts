import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { kernelModuleProblem } from '../dkms/elf.js';
import { dkmsVariables, evaluateDkmsConf } from '../dkms/evaluate.js';
import { dependenciesFirst, type DkmsPlan } from '../dkms/plan.js';
import { planScript } from '../dkms/plan-script.js';
import { runtimeScripts } from '../dkms/runtime.js';
import type { EngineContainer } from '../engine/index.js';
import { isKfarmError } from '../model/errors.js';
import type { Phase } from '../model/events.js';
import type { Target, TargetResult, TargetStatus } from '../model/result.js';
import { readHead } from '../util/read-file.js';
import { TextTail } from '../util/text-tail.js';
import { CONTAINER_SOURCE, containerRunner, copyResultsOut, fullMount, resetBuilder } from './build-container.js';
import type { Builder } from './builder-pool.js';
import type { Collected } from './collect.js';
import { Deadline } from './deadline.js';
import type { FarmSettings } from './options.js';
import { PhaseClock } from './phase-clock.js';
import { resultOf, type TargetOutcome } from './results.js';

export interface BuildJobContext {
  settings: FarmSettings;
  /**
   * Leases the warm builder this target runs in, and gives it back: `clean` when the target ended without
   * leaving a trace that concerns the next (no time limit, OOM kill, full disk, rejected output or error).
   */
  builders: { lease: (signal: AbortSignal) => Promise<Builder>; release: (builder: Builder, clean: boolean) => void };
  /** dkms.conf as the user names it, for error messages. */
  confLabel: string;
  /** The tree's directory name when a package kept it as `/usr/src/<module>-<version>`. */
  packageDir?: string;
  /** The `--with-module` packages' dkms.conf, in the order given; the builder has their trees. */
  withModules: DkmsConfRef[];
  /** The target's builder image, already prepared (for the report). */
  image: string;
  /** A fresh directory this job owns; module/ and log/ are collected into it. */
  stageDir: string;
  signal: AbortSignal;
  onPhase?: (phase: Phase) => void;
  /**
   * Runs the compile (and copy-out) in one of the `--jobs` build slots; the container is started, filled
   * and evaluated before. May throw NotScheduled (a --fail-fast run stopped meanwhile).
   */
  buildSlot: <T>(work: () => Promise<T>) => Promise<T>;
  /** Called inside the slot once the compile ended (false: it failed), so --fail-fast decides before the next. */
  onCompiled?: (ok: boolean) => void;
}

/** A tree's dkms.conf as a job evaluates it (EvaluateInput's confLabel and packageDir). */
export interface DkmsConfRef {
  confLabel: string;
  packageDir?: string;
}

/** Thrown by a build slot that will not run the work: the target is reported as not run. */
export class NotScheduled extends Error {}

/** A `--with-module` package's plan for this kernel, and where its tree is in the builder. */
interface WithModule {
  plan: DkmsPlan;
  sourceDir: string;
}

interface Compiled {
  code: number;
  reason: string;
  collected: Collected;
}

/**
 * One target's life in its container, step by step: start → copyIn → evaluate → (build slot) build →
 * copyOut → verdict. A failed compile is a result; a broken dkms.conf (the user's input, not this kernel's
 * problem), a lost engine and interruption are thrown.
 */
export class BuildJob {
  readonly #deadline: Deadline;
  readonly #signal: AbortSignal;
  readonly #clock: PhaseClock;
  readonly #started = Date.now();
  #waited = 0;
  #builder: Builder | undefined;
  #container: EngineContainer | undefined;
  #plan: DkmsPlan | undefined;
  /** Set by a verdict after which the builder can serve another target. */
  #clean = false;

  constructor(
    readonly target: Target,
    readonly context: BuildJobContext,
  ) {
    // The time limit covers the target's own work, not its wait for a build slot.
    this.#deadline = new Deadline(context.settings.timeoutMs);
    this.#signal = AbortSignal.any([context.signal, this.#deadline.signal]);
    this.#clock = new PhaseClock(context.onPhase);
  }

  async run(): Promise<TargetOutcome> {
    try {
      const container = await this.#start();
      await this.#copyIn(container);
      const plan = await this.#evaluate(container);
      if (plan.excluded) {
        this.#clean = true;
        return this.#outcome('skipped', { error: plan.excluded });
      }
      const withModules = await this.#evaluateWithModules(container);
      const compiled = await this.#inSlot(() => this.#compileAndCopyOut(container, plan, withModules));
      return await this.#verdict(container, this.#plan ?? plan, compiled);
    } catch (error) {
      return await this.#failure(error);
    } finally {
      this.#deadline.stop();
      if (this.#builder) this.context.builders.release(this.#builder, this.#clean);
    }
  }

  /**
   * A free builder, or a new one. Waiting for one is not this target's time (as for a build slot): its `start`
   * is the making of a builder made for it, 0 for one it found warm.
   */
  async #start(): Promise<EngineContainer> {
    this.#clock.enter('start');
    this.#deadline.pause();
    const asked = Date.now();
    try {
      this.#builder = await this.context.builders.lease(this.context.signal);
    } finally {
      this.#deadline.resume();
    }
    this.#clock.enter(undefined);
    const made = this.#builder.madeMs ?? 0;
    this.#clock.phases.start = made;
    this.#waited += Date.now() - asked - made;
    this.#container = this.#builder.container;
    return this.#container;
  }

  async #copyIn(container: EngineContainer): Promise<void> {
    this.#clock.enter('copyIn');
    await resetBuilder(container, this.#signal);
  }

  async #evaluate(container: EngineContainer): Promise<DkmsPlan> {
    this.#clock.enter('evaluate');
    const { confOverride } = this.context.settings;
    const { packageDir } = this.context;
    this.#plan = await this.#evaluateConf(container, {
      confLabel: this.context.confLabel,
      ...(packageDir === undefined ? {} : { packageDir }),
      sourceDir: CONTAINER_SOURCE,
      ...(confOverride === undefined ? {} : { confOverride }),
    });
    return this.#plan;
  }

  /**
   * The `--with-module` packages this kernel builds, dependencies first (by their BUILD_DEPENDS). One that
   * BUILD_EXCLUSIVE rules out is left out, as DKMS would not install it: what needs it then fails as in DKMS.
   */
  async #evaluateWithModules(container: EngineContainer): Promise<WithModule[]> {
    const withModules: WithModule[] = [];
    for (const [n, conf] of this.context.withModules.entries()) {
      const sourceDir = `/kfarm/with/${n}`;
      const plan = await this.#evaluateConf(container, { ...conf, sourceDir });
      if (!plan.excluded) withModules.push({ plan, sourceDir });
    }
    return dependenciesFirst(withModules);
  }

  #evaluateConf(
    container: EngineContainer,
    conf: DkmsConfRef & { sourceDir: string; confOverride?: string },
  ): Promise<DkmsPlan> {
    const { evaluationTimeoutMs } = this.context.settings;
    return evaluateDkmsConf(containerRunner(container), {
      ...conf,
      kernel: this.target.kernel,
      arch: this.target.arch,
      parallelJobs: this.context.settings.parallelJobs,
      ...(evaluationTimeoutMs === undefined ? {} : { timeoutMs: evaluationTimeoutMs }),
      signal: this.#signal,
    });
  }

  /** Waits for a build slot (the time limit paused meanwhile), then runs `work` in it. */
  async #inSlot<T>(work: () => Promise<T>): Promise<T> {
    this.#deadline.pause();
    this.#clock.enter(undefined);
    const waitStarted = Date.now();
    return this.context.buildSlot(async () => {
      this.#waited += Date.now() - waitStarted;
      this.#deadline.resume();
      this.#signal.throwIfAborted();
      try {
        return await work();
      } catch (error) {
        this.context.onCompiled?.(false);
        throw error;
      }
    });
  }

  async #compileAndCopyOut(container: EngineContainer, plan: DkmsPlan, withModules: WithModule[]): Promise<Compiled> {
    const { code, reason } = await this.#buildAll(container, plan, withModules);
    const collected = await this.#copyOut(container, code !== 0);
    this.context.onCompiled?.(code === 0);
    return { code, reason, collected };
  }

  /** The `--with-module` packages built and installed in turn, then the module; the first failure ends it. */
  async #buildAll(
    container: EngineContainer,
    plan: DkmsPlan,
    withModules: WithModule[],
  ): Promise<{ code: number; reason: string }> {
    this.#clock.enter('build');
    for (const { plan: withPlan, sourceDir } of withModules) {
      const built = await this.#build(container, withPlan, { KFARM_SOURCE: sourceDir, KFARM_ROLE: 'dependency' });
      const name = `${withPlan.packageName}/${withPlan.packageVersion}`;
      if (built.code !== 0) return { code: built.code, reason: `--with-module ${name}: ${built.reason}` };
    }
    if (withModules.length === 0) return this.#build(container, plan, {});
    // DKMS sources a module's dkms.conf when it builds it, after its dependencies are installed: what the
    // file computes from them (a path, a version) is read again now.
    this.#plan = await this.#evaluate(container);
    this.#clock.enter('build');
    return this.#build(container, this.#plan, {});
  }

  async #build(
    container: EngineContainer,
    plan: DkmsPlan,
    extraEnv: Record<string, string>,
  ): Promise<{ code: number; reason: string }> {
    const { settings } = this.context;
    const { kernel, arch } = this.target;
    const variables = dkmsVariables({ kernel, arch, parallelJobs: settings.parallelJobs });
    const env = {
      KFARM_PLAN: planScript(plan, {
        ...variables,
        module: plan.packageName,
        module_version: plan.packageVersion,
      }),
      ...(settings.sourceDateEpoch === undefined ? {} : { SOURCE_DATE_EPOCH: String(settings.sourceDateEpoch) }),
      ...extraEnv,
    };
    const reason = new TextTail();
    const script = (await runtimeScripts()).build;
    const code = await container.exec(['bash', '-c', script, 'kfarm-build'], {
      env,
      stdout: reason,
      stderr: reason,
      signal: this.#signal,
    });
    return { code, reason: reason.lastLine() };
  }

  /**
   * After a failed build the results are wanted for make.log only, and may not come out at all (a container
   * whose memory is full cannot run tar): then the verdict goes on without them.
   */
  async #copyOut(container: EngineContainer, buildFailed: boolean): Promise<Collected> {
    this.#clock.enter('copyOut');
    try {
      return await copyResultsOut(container, this.context.stageDir, this.#signal);
    } catch (error) {
      if (!buildFailed || !isKfarmError(error, 'KFARM_ENGINE_ERROR')) throw error;
      await this.#emptyStage();
      return { modules: [], symvers: false, log: false, logCutBytes: 0 };
    }
  }

  async #verdict(container: EngineContainer, plan: DkmsPlan, compiled: Compiled): Promise<TargetOutcome> {
    const { collected } = compiled;
    const log = collected.log
      ? { log: 'log/make.log', ...(collected.logCutBytes > 0 ? { logCutBytes: collected.logCutBytes } : {}) }
      : {};
    if (compiled.code === 0) {
      const artifacts = collected.modules.sort().map((name) => `module/${name}`);
      const notModule = await this.#notAModule(artifacts);
      if (notModule) return this.#outcome('failed', { error: notModule, makeCommand: plan.buildCommand, ...log });
      this.#clean = true;
      return this.#outcome('built', { artifacts, makeCommand: plan.buildCommand, ...log });
    }
    const { memoryBytes, diskBytes } = this.context.settings.limits;
    if ((await container.oomKills()) > 0) {
      const error = `the build ran out of memory (limit ${mib(memoryBytes)} MiB; raise it with --memory)`;
      return this.#outcome('oom', { error, ...log });
    }
    const full = await fullMount(container).catch(() => undefined);
    if (full) {
      const error = `the build filled its disk limit (${mib(diskBytes)} MiB at ${full}; raise it with --disk)`;
      return this.#outcome('failed', { error, makeCommand: plan.buildCommand, ...log });
    }
    const error = compiled.reason || `the build exited ${compiled.code}`;
    this.#clean = true;
    return this.#outcome('failed', { error, makeCommand: plan.buildCommand, ...log });
  }

  /** A time limit, or rejected output, is this target's result; anything else is thrown to the scheduler. */
  async #failure(error: unknown): Promise<TargetOutcome> {
    if (this.#deadline.expired && !this.context.signal.aborted) {
      // Keep what make wrote so far: the reason a build hangs is usually in its last lines.
      const partial = this.#container && this.#plan ? await this.#collectQuietly(this.#container) : undefined;
      const seconds = Math.round(this.context.settings.timeoutMs / 1000);
      return this.#outcome('timeout', {
        error: `the build did not finish within ${seconds} s`,
        ...(partial?.log ? { log: 'log/make.log' } : {}),
      });
    }
    if (isKfarmError(error, 'KFARM_OUTPUT_UNSAFE')) {
      // Nothing of a rejected output is kept, not even the files that came before the bad entry.
      await this.#emptyStage();
      return this.#outcome('failed', { error: error.message });
    }
    throw error;
  }

  /** A `.ko` that is not a kernel module for the target's machine fails the target (and is not kept). */
  async #notAModule(artifacts: string[]): Promise<string | undefined> {
    for (const artifact of artifacts) {
      const head = await readHead(join(this.context.stageDir, artifact), 64);
      const problem = kernelModuleProblem(head, this.target.arch);
      if (!problem) continue;
      await this.#emptyStage();
      return `not a kernel module: ${artifact} is ${problem}`;
    }
    return undefined;
  }

  async #emptyStage(): Promise<void> {
    await rm(this.context.stageDir, { recursive: true, force: true });
    await mkdir(this.context.stageDir);
  }

  async #collectQuietly(container: EngineContainer): Promise<Collected | undefined> {
    const signal = AbortSignal.timeout(10_000);
    try {
      return await copyResultsOut(container, this.context.stageDir, signal);
    } catch {
      return undefined;
    }
  }

  #outcome(status: TargetStatus, extra: Partial<TargetResult>): TargetOutcome {
    this.#clock.enter(undefined);
    this.#deadline.stop();
    const durationMs = Date.now() - this.#started - this.#waited;
    const result = resultOf(this.target, status, durationMs, {
      phases: this.#clock.phases,
      image: this.context.image,
      ...extra,
    });
    return { result, ...(this.#plan ? { plan: this.#plan } : {}) };
  }
}

function mib(bytes: number): number {
  return Math.round(bytes / 1024 ** 2);
}
