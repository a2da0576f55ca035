import { join } from 'node:path';
import type { ImageEvents } from '../model/events.js';
import { Label, type Engine } from '../engine/index.js';
import type { SuiteSource } from '../plan/debian-releases.js';
import { bootstrapImage } from './bootstrap.js';
import { commitLayer, prepareLogPath } from './prepare.js';
import { withLock } from '../util/lock.js';
import { loadRecipe, type Recipe } from './recipe.js';

/** What a headers image must hold; discovery supplies it. */
export interface HeadersSpec {
  distro: 'debian';
  release: string;
  kernel: string;
  headersPackage: string;
  headersVersion: string;
  suite: string;
  backports: boolean;
}

export interface ImageStoreOptions {
  /** Preparation logs, one per image; kept (under the cache dir) so a failure's log can be read afterwards. */
  logDir: string;
  /** Where the locks that keep two kfarm processes from preparing the same image live. Default: `<logDir>/../locks`. */
  lockDir?: string;
  sources: (release: string) => SuiteSource[];
  events?: ImageEvents;
}

export function baseRef(release: string): string {
  return `kfarm/debian:${release}`;
}

/** Docker tags allow [A-Za-z0-9_.-]: a `+` in a Debian kernel release (6.12.94+deb13-amd64) becomes `_`. */
export function headersRef(release: string, kernel: string): string {
  return `kfarm/debian-${release}:${kernel.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
}

/**
 * Prepares builder images: a base per release, one headers layer per kernel. Network is used only here.
 * Each image is prepared once per process even when many jobs ask for it at the same time, and reused
 * across runs when its labels say it holds what is asked (same recipe, same headers version).
 */
export class ImageStore {
  readonly #inflight = new Map<string, Promise<string>>();
  #recipe: Promise<Recipe> | undefined;

  constructor(
    readonly engine: Engine,
    readonly options: ImageStoreOptions,
  ) {}

  /** Where the cross-process preparation locks live (tool images use them too). */
  get lockDir(): string {
    return this.options.lockDir ?? join(this.options.logDir, '..', 'locks');
  }

  recipe(): Promise<Recipe> {
    this.#recipe ??= loadRecipe('debian');
    return this.#recipe;
  }

  /** Resolves with the image ref to build `spec` in, preparing what is missing. */
  headers(spec: HeadersSpec, signal?: AbortSignal): Promise<string> {
    const ref = headersRef(spec.release, spec.kernel);
    return this.#once(ref, async () => {
      const recipe = await this.recipe();
      const labels = headersLabels(spec, recipe);
      if (await this.holds(ref, labels)) return ref;
      const base = await this.base(spec.release, signal);
      await this.#prepare(ref, labels, `headers ${spec.headersPackage} ${spec.headersVersion}`, signal, () =>
        commitLayer(this.engine, {
          base,
          ref,
          script: recipe.installHeaders,
          args: [spec.headersPackage, spec.suite, spec.backports ? 'backports' : ''],
          labels,
          logPath: prepareLogPath(this.options.logDir, ref),
          what: `installing ${spec.headersPackage} from ${spec.suite}`,
          ...(signal ? { signal } : {}),
        }),
      );
      return ref;
    });
  }

  base(release: string, signal?: AbortSignal): Promise<string> {
    const ref = baseRef(release);
    return this.#once(ref, async () => {
      const recipe = await this.recipe();
      const labels = {
        [Label.role]: 'base',
        [Label.distro]: 'debian',
        [Label.release]: release,
        [Label.recipe]: recipe.hash,
      };
      if (await this.holds(ref, labels)) return ref;
      await this.#prepare(ref, labels, `base image for debian/${release}`, signal, () =>
        bootstrapImage(this.engine, {
          release,
          ref,
          packages: recipe.basePackages,
          sources: this.options.sources(release).map((s) => `deb ${s.archive} ${s.suite} main`),
          labels,
          logPath: prepareLogPath(this.options.logDir, ref),
          ...(signal ? { signal } : {}),
        }),
      );
      return ref;
    });
  }

  /** True when the image exists and carries every one of these labels with these values. */
  async holds(ref: string, want: Record<string, string>): Promise<boolean> {
    const labels = (await this.engine.image(ref))?.labels;
    return labels !== undefined && Object.entries(want).every(([k, v]) => labels[k] === v);
  }

  /** Runs `work` once per ref and process; a failure is retried by a later run, not by this run's other jobs. */
  #once(ref: string, work: () => Promise<string>): Promise<string> {
    let promise = this.#inflight.get(ref);
    if (!promise) {
      promise = work();
      this.#inflight.set(ref, promise);
    }
    return promise;
  }

  /**
   * Prepares an image under a lock shared with other kfarm processes; one that finds the image made by
   * another while it waited uses it.
   */
  async #prepare(
    ref: string,
    labels: Record<string, string>,
    what: string,
    signal: AbortSignal | undefined,
    work: () => Promise<void>,
  ): Promise<void> {
    const started = Date.now();
    this.options.events?.onPrepare?.(ref, what);
    await withLock(
      this.lockDir,
      ref,
      async () => {
        if (!(await this.holds(ref, labels))) await work();
      },
      signal,
    );
    this.options.events?.onReady?.(ref, Date.now() - started, false);
  }
}

function headersLabels(spec: HeadersSpec, recipe: Recipe): Record<string, string> {
  return {
    [Label.role]: 'headers',
    [Label.distro]: spec.distro,
    [Label.release]: spec.release,
    [Label.kernel]: spec.kernel,
    [Label.headersPackage]: spec.headersPackage,
    [Label.headersVersion]: spec.headersVersion,
    [Label.recipe]: recipe.hash,
  };
}
