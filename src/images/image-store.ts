import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { execa } from 'execa';
import { KfarmError } from '../errors.js';
import type { Engine } from '../engine/engine.js';
import { Label } from '../engine/labels.js';
import { loadRecipe, type Recipe } from './recipe.js';

export interface SuiteSource {
  suite: string;
  archive: string;
  backports: boolean;
}

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

export interface ImageEvents {
  onPrepare?: (ref: string, what: string) => void;
  onReady?: (ref: string, ms: number, reused: boolean) => void;
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
    readonly options: { logDir: string; sources: (release: string) => SuiteSource[]; events?: ImageEvents },
  ) {}

  recipe(): Promise<Recipe> {
    this.#recipe ??= loadRecipe('debian');
    return this.#recipe;
  }

  /** Resolves with the image ref to build `spec` in, preparing what is missing. */
  headers(spec: HeadersSpec, signal?: AbortSignal): Promise<string> {
    const ref = headersRef(spec.release, spec.kernel);
    return this.#once(ref, async () => {
      const recipe = await this.recipe();
      const want = {
        [Label.role]: 'headers',
        [Label.distro]: spec.distro,
        [Label.release]: spec.release,
        [Label.kernel]: spec.kernel,
        [Label.headersPackage]: spec.headersPackage,
        [Label.headersVersion]: spec.headersVersion,
        [Label.recipe]: recipe.hash,
      };
      if (await this.#matches(ref, want)) return ref;
      const base = await this.base(spec.release, signal);
      await this.#prepare(ref, `headers ${spec.headersPackage} ${spec.headersVersion}`, () =>
        this.#addHeaders(base, ref, spec, recipe, want, signal),
      );
      return ref;
    });
  }

  base(release: string, signal?: AbortSignal): Promise<string> {
    const ref = baseRef(release);
    return this.#once(ref, async () => {
      const recipe = await this.recipe();
      const want = {
        [Label.role]: 'base',
        [Label.distro]: 'debian',
        [Label.release]: release,
        [Label.recipe]: recipe.hash,
      };
      if (await this.#matches(ref, want)) return ref;
      await this.#prepare(ref, `base image for debian/${release}`, () =>
        this.#bootstrap(release, ref, recipe, want, signal),
      );
      return ref;
    });
  }

  #once(ref: string, work: () => Promise<string>): Promise<string> {
    let promise = this.#inflight.get(ref);
    if (!promise) {
      promise = work();
      this.#inflight.set(ref, promise);
      // A failed preparation may be retried by a later run, not by the other jobs of this one.
    }
    return promise;
  }

  async #matches(ref: string, want: Record<string, string>): Promise<boolean> {
    const labels = await this.engine.imageLabels(ref);
    return labels !== undefined && Object.entries(want).every(([k, v]) => labels[k] === v);
  }

  async #prepare(ref: string, what: string, work: () => Promise<void>): Promise<void> {
    const started = Date.now();
    this.options.events?.onPrepare?.(ref, what);
    await work();
    this.options.events?.onReady?.(ref, Date.now() - started, false);
  }

  #logPath(ref: string): string {
    return join(this.options.logDir, `${ref.replace(/[^A-Za-z0-9_.-]/g, '_')}.log`);
  }

  async #bootstrap(
    release: string,
    ref: string,
    recipe: Recipe,
    labels: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<void> {
    await mkdir(this.options.logDir, { recursive: true });
    const logPath = this.#logPath(ref);
    const log = createWriteStream(logPath);
    const sources = this.options.sources(release).map((s) => `deb ${s.archive} ${s.suite} main`);
    const mmdebstrap = execa(
      'mmdebstrap',
      [
        '--variant=apt',
        `--include=${recipe.basePackages.join(',')}`,
        '--aptopt=Acquire::Retries "3"',
        release,
        '-',
        ...sources,
      ],
      { stdout: 'pipe', stderr: 'pipe', buffer: false, cancelSignal: signal, forceKillAfterDelay: 2000 },
    );
    mmdebstrap.stderr.pipe(log);
    const rootfs = new PassThrough();
    mmdebstrap.stdout.pipe(rootfs);
    // Import under a temporary name and tag only after mmdebstrap succeeded: a truncated root filesystem
    // must never become an image that a later run would reuse.
    const partial = `${ref}-partial-${this.engine.session.id}`;
    const imported = this.engine.importImage(rootfs, partial, labels, signal);
    try {
      await mmdebstrap;
    } catch (cause) {
      rootfs.destroy();
      await imported.catch(() => undefined);
      await this.engine.docker
        .getImage(partial)
        .remove({ force: true })
        .catch(() => undefined);
      log.end();
      throw new KfarmError(
        'KFARM_IMAGE_FAILED',
        `preparing ${ref} failed: mmdebstrap ${describeExit(cause)} (log: ${logPath})${await tail(logPath)}`,
        { cause },
      );
    }
    try {
      await imported;
      const [repo, tag] = [ref.slice(0, ref.lastIndexOf(':')), ref.slice(ref.lastIndexOf(':') + 1)];
      await this.engine.docker.getImage(partial).tag({ repo, tag });
      await this.engine.docker.getImage(partial).remove({ noprune: true });
    } catch (cause) {
      await this.engine.docker
        .getImage(partial)
        .remove({ force: true })
        .catch(() => undefined);
      throw new KfarmError(
        'KFARM_IMAGE_FAILED',
        `importing ${ref} into the engine failed: ${(cause as Error).message}`,
        { cause },
      );
    } finally {
      log.end();
    }
  }

  async #addHeaders(
    base: string,
    ref: string,
    spec: HeadersSpec,
    recipe: Recipe,
    labels: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<void> {
    await mkdir(this.options.logDir, { recursive: true });
    const logPath = this.#logPath(ref);
    const log = createWriteStream(logPath);
    const container = await this.engine.start(
      {
        image: base,
        cmd: ['sleep', '3600'],
        network: 'bridge',
        hardened: false,
        labels: { [Label.role]: 'prepare', [Label.target]: ref },
      },
      signal,
    );
    try {
      const args = [spec.headersPackage, spec.suite, spec.backports ? 'backports' : ''];
      const code = await container.exec(['bash', '-c', recipe.installHeaders, 'install-headers', ...args], {
        stdout: log,
        stderr: log,
        ...(signal ? { signal } : {}),
      });
      if (code !== 0) {
        throw new KfarmError(
          'KFARM_IMAGE_FAILED',
          `preparing ${ref} failed: installing ${spec.headersPackage} from ${spec.suite} exited ${code} (log: ${logPath})${await tail(logPath)}`,
        );
      }
      await this.engine.commit(container, ref, labels);
    } finally {
      log.end();
      await container.remove();
    }
  }
}

function describeExit(error: unknown): string {
  const e = error as { exitCode?: number; signal?: string; isCanceled?: boolean };
  if (e.isCanceled) return 'was cancelled';
  if (e.signal) return `was killed by ${e.signal}`;
  return `exited ${e.exitCode ?? '?'}`;
}

/** The last meaningful line of a log, so the one-line error says why without opening the file. */
async function tail(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^(E:|error|kfarm:)/i.test(l))
    .pop();
  return line ? `: ${line}` : '';
}
