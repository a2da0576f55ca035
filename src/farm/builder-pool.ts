import { create as createTar } from 'tar';
import type { Readable } from 'node:stream';
import type { Engine, EngineContainer, VolumeMount } from '../engine/index.js';
import type { BuilderEnv } from '../images/image-store.js';
import type { KernelHeaders } from '../images/headers-volumes.js';
import { runtimeScripts } from '../dkms/runtime.js';
import { KfarmError } from '../model/errors.js';
import { TextTail } from '../util/text-tail.js';
import { AgentContainer } from './agent-container.js';
import { startBuildContainer } from './build-container.js';
import type { FarmSettings } from './options.js';

/** How long a lease waits for targets whose environments are still being looked up (they may need volumes filled). */
const OTHERS_WAIT_MS = 1_500;

/** A builder container: one image, the headers volumes of some kernels, and the agent that runs its commands. */
export interface Builder {
  readonly container: EngineContainer;
  readonly image: string;
  readonly kernels: ReadonlySet<string>;
  /** How long making it took, until its first target takes it (later targets found it ready). */
  madeMs: number | undefined;
}

interface Waiter {
  env: BuilderEnv;
  /** Higher first: the matrix order (as for build slots). */
  priority: number;
  resolve: (builder: Builder) => void;
  reject: (error: unknown) => void;
  signal: AbortSignal;
}

/**
 * Warm builders: a builder serves several targets one after another, so a container's create, start and
 * removal (~0.9 host CPU-s of dockerd, containerd and runc) and the source's copy-in are paid per builder,
 * not per target. A builder mounts the headers volumes of every kernel of its image that is waiting when it
 * is made, so one builder per release can serve all of that release's kernels. At most `size` builders
 * live at once (the build concurrency); a target that finds none free waits for one.
 *
 * A builder goes back to the pool only after a target that ended cleanly; after a time limit, an OOM kill,
 * a full disk, rejected output or any error it is removed, so what went wrong stays with that target.
 */
export class BuilderPool {
  readonly #idle: Builder[] = [];
  readonly #waiters: Waiter[] = [];
  /** Kernels (by image) whose targets are ready to build and have no builder yet. */
  readonly #waiting = new Map<string, Map<string, KernelHeaders>>();
  #live = 0;
  /** Targets whose environment is still being resolved, and who waits for them. */
  #resolving = 0;
  #settled: (() => void)[] = [];

  constructor(
    readonly engine: Engine,
    readonly settings: FarmSettings,
    readonly size: number,
  ) {}

  /** A target is resolving its environment: leases wait a little for it (see #othersKnown). */
  announce(): void {
    this.#resolving++;
  }

  /** That target knows whether it builds, and for which kernel (it called `expect`, or it will not build). */
  resolved(): void {
    this.#resolving--;
    for (const wake of this.#settled.splice(0)) wake();
  }

  /** A target will want a builder for `env`: builders made from now on mount its kernel too. */
  expect(env: BuilderEnv): void {
    let kernels = this.#waiting.get(env.image);
    if (!kernels) {
      kernels = new Map<string, KernelHeaders>();
      this.#waiting.set(env.image, kernels);
    }
    kernels.set(env.headers.kernel, env.headers);
  }

  /** A target that will not build after all (a cache hit, a stopped run): no builder needs its kernel. */
  forget(env: BuilderEnv): void {
    this.#waiting.get(env.image)?.delete(env.headers.kernel);
  }

  /** A builder for `env`: a warm one that mounts its kernel, else a new one once fewer than `size` live. */
  async lease(env: BuilderEnv, signal: AbortSignal, priority: number): Promise<Builder> {
    await this.#othersKnown();
    signal.throwIfAborted();
    return new Promise<Builder>((resolve, reject) => {
      const waiter = { env, priority, resolve, reject, signal };
      const at = this.#waiters.findIndex((w) => w.priority < priority);
      this.#waiters.splice(at < 0 ? this.#waiters.length : at, 0, waiter);
      signal.addEventListener('abort', () => this.#giveUp(waiter), { once: true });
      this.#serveWaiters();
    });
  }

  /** Back to the pool after a target that ended cleanly (`clean`), else removed. */
  release(builder: Builder, clean: boolean): void {
    builder.madeMs = undefined;
    const useful = [...(this.#waiting.get(builder.image)?.keys() ?? [])].some((k) => builder.kernels.has(k));
    if (clean && (useful || this.#waiters.length > 0)) this.#idle.push(builder);
    else this.#retire(builder);
    this.#serveWaiters();
  }

  /** Removes idle builders (the run's end); busy ones are removed by their targets. */
  close(): void {
    for (const builder of this.#idle.splice(0)) this.#retire(builder);
  }

  #serveWaiters(): void {
    while (this.#waiters.length > 0) {
      const waiter = this.#waiters[0] as Waiter;
      const { env } = waiter;
      const idle = this.#idle.findIndex((b) => b.image === env.image && b.kernels.has(env.headers.kernel));
      if (idle < 0 && this.#live >= this.size && this.#idle.length > 0) this.#retire(this.#idle.shift() as Builder);
      if (idle < 0 && this.#live >= this.size) return;
      this.#waiters.shift();
      if (idle >= 0) {
        this.forget(env);
        waiter.resolve(this.#idle.splice(idle, 1)[0] as Builder);
      } else {
        this.#make(env, waiter.signal).then(waiter.resolve, waiter.reject);
      }
    }
  }

  #giveUp(waiter: Waiter): void {
    const at = this.#waiters.indexOf(waiter);
    if (at < 0) return;
    this.#waiters.splice(at, 1);
    waiter.reject(waiter.signal.reason);
  }

  async #make(env: BuilderEnv, signal: AbortSignal): Promise<Builder> {
    this.#live++;
    try {
      const kernels = this.#kernelsFor(env);
      this.forget(env);
      const started = Date.now();
      const container = await this.#start(env, kernels, signal);
      const madeMs = Date.now() - started;
      return { container, image: env.image, kernels: new Set(kernels.map((k) => k.kernel)), madeMs };
    } catch (error) {
      this.#live--;
      this.#serveWaiters();
      throw error;
    }
  }

  /**
   * Waits (at most OTHERS_WAIT_MS) until the other targets know their environments: on a warm machine that
   * takes milliseconds, and then a new builder mounts all of its release's kernels at once and the matrix
   * order decides who goes first.
   */
  async #othersKnown(): Promise<void> {
    const deadline = Date.now() + OTHERS_WAIT_MS;
    while (this.#resolving > 0 && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.#settled.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** This target's kernel, and every waiting kernel of the same image whose volumes do not clash with those. */
  #kernelsFor(env: BuilderEnv): KernelHeaders[] {
    const chosen = [env.headers];
    const at = new Map(env.headers.mounts.map((m) => [m.target, m.volume]));
    for (const other of this.#waiting.get(env.image)?.values() ?? []) {
      if (other.kernel === env.headers.kernel) continue;
      if (other.mounts.some((m) => (at.get(m.target) ?? m.volume) !== m.volume)) continue;
      for (const m of other.mounts) at.set(m.target, m.volume);
      chosen.push(other);
    }
    return chosen;
  }

  async #start(env: BuilderEnv, kernels: KernelHeaders[], signal: AbortSignal): Promise<EngineContainer> {
    const volumes = new Map<string, VolumeMount>();
    for (const k of kernels) for (const m of k.mounts) volumes.set(m.target, m);
    const moduleDirs = [...new Set(kernels.map((k) => k.moduleDir))];
    const raw = await startBuildContainer(this.engine, env.image, this.settings, signal, {
      volumes: [...volumes.values()],
      moduleDirs,
      targets: kernels.length,
    });
    const scripts = await runtimeScripts();
    const container = new AgentContainer(raw, scripts.agent);
    try {
      await this.#setup(
        container,
        {
          script: scripts.builder,
          tree: this.settings.treeOf(env.release),
          withTrees: this.settings.withTreesOf(env.release),
        },
        kernels,
        signal,
      );
    } catch (error) {
      this.engine.removeLater(container);
      throw error;
    }
    return container;
  }

  /**
   * The source tree in once (a builder's image is of one release, so all its targets build the same tree), and
   * each kernel's `<moddir>/<kver>/build` and `source` links; then each `--with-module` tree.
   */
  async #setup(
    container: EngineContainer,
    { script, tree, withTrees }: { script: string; tree: string; withTrees: string[] },
    kernels: KernelHeaders[],
    signal: AbortSignal,
  ) {
    const links = kernels.flatMap((k) => k.links.flatMap((l) => [l.path, l.target]));
    await setupStep(container, script, ['setup', ...links], tree, signal);
    for (const [n, withTree] of withTrees.entries())
      await setupStep(container, script, ['setup-with', String(n)], withTree, signal);
  }

  #retire(builder: Builder): void {
    this.#live--;
    this.engine.removeLater(builder.container);
  }
}

/** One builder.sh step, with `tree` as a tar on its stdin. */
async function setupStep(
  container: EngineContainer,
  script: string,
  args: string[],
  tree: string,
  signal: AbortSignal,
): Promise<void> {
  const tarball = createTar({ cwd: tree, portable: true }, ['.']) as unknown as Readable;
  const stderr = new TextTail();
  const code = await container.exec(['bash', '-c', script, 'builder', ...args], { stdin: tarball, stderr, signal });
  if (code !== 0)
    throw new KfarmError(
      'KFARM_ENGINE_ERROR',
      `setting up a builder failed (exit ${code}: ${stderr.lastLine() || 'no message'})`,
    );
}
