import { createHash } from 'node:crypto';
import { basename, dirname } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { create as createTar } from 'tar';
import { Label, type Engine, type VolumeMount } from '../engine/index.js';
import { KfarmError } from '../model/errors.js';
import type { PackageFile } from '../model/target.js';
import { withLock } from '../util/lock.js';
import { prepareLogPath, reasonIn, withPrepareLog } from './prepare.js';

/** What a builder needs to build for one kernel, all of it in engine volumes kfarm filled from verified .debs. */
export interface KernelHeaders {
  kernel: string;
  /** One read-only volume per package, at the directory that package installs (`/usr/src/linux-headers-…`). */
  mounts: VolumeMount[];
  /** `<moddir>/<kver>/build` and `source`, as the headers package ships them: a builder creates these links. */
  links: { path: string; target: string }[];
  /** Where the release's kernel packages put modules (bookworm `/lib/modules`, trixie `/usr/lib/modules`). */
  moduleDir: '/lib/modules' | '/usr/lib/modules';
  /** CONFIG_MODULE_SIG_HASH, when the kernel checks module signatures. */
  sigHash?: string;
  /** Identifies the headers' contents (the .debs' SHA-256s, how they were unpacked): part of the result cache key. */
  files: string;
}

export interface KernelHeadersSpec {
  kernel: string;
  /** The kernel's `SRCARCH`, or '' to keep every architecture's `arch/`. */
  srcarch: string;
  debs: PackageFile[];
  /** The image to unpack in (the release's base: its tar, ldd and libraries). */
  base: string;
  /** For progress and log names. */
  ref: string;
  onFill?: (what: string) => void;
}

export interface HeadersVolumesOptions {
  logDir: string;
  lockDir: string;
  /** images/debian/unpack-package.sh, and a hash of it and of the format: part of every volume's name. */
  script: string;
  scriptHash: string;
  /** Runs a fill among the store's other preparation work (a few at a time). */
  limit: <T>(work: () => Promise<T>) => Promise<T>;
}

interface FillItem {
  name: string;
  deb: PackageFile;
}

interface FillHow {
  fetch: (files: PackageFile[]) => Promise<string[]>;
  signal?: AbortSignal;
}

/** Label keys of a filled volume's marker: what the unpack script found (`kfarm-fact key=value`). */
const FACT = 'kfarm.fact.';

/**
 * Headers as engine volumes, one per .deb, named after the package's SHA-256 (a package the archive republished
 * under the same version is another volume) and filled once, in a container with no network: every builder of
 * the release mounts them read-only, so one builder serves many kernels and a new kernel costs no image layer
 * (no commit). A volume counts only once its marker volume `<name>.ok` exists, created after a complete fill:
 * a fill that was cut off is emptied and done again. Volumes live in the engine, so a remote engine works.
 */
export class HeadersVolumes {
  readonly #inflight = new Map<string, Promise<Record<string, string>>>();

  constructor(
    readonly engine: Engine,
    readonly options: HeadersVolumesOptions,
  ) {}

  /** `fetch` gives verified local copies of .debs: called only for volumes that must be filled. */
  async kernel(spec: KernelHeadersSpec, how: FillHow): Promise<KernelHeaders> {
    const names = spec.debs.map((deb) => this.volumeName(deb, spec.srcarch));
    const facts = await this.#factsOf(names, spec, how);
    const own = facts.find((f) => f['kernel'] === spec.kernel);
    const moduleDir = own?.['moddir'];
    if (!own || (moduleDir !== '/lib/modules' && moduleDir !== '/usr/lib/modules') || !own['build'])
      throw new KfarmError(
        'KFARM_IMAGE_FAILED',
        `preparing ${spec.ref} failed: its headers package shipped no <moddir>/${spec.kernel}/build`,
      );
    const links = [{ path: `${moduleDir}/${spec.kernel}/build`, target: own['build'] }];
    if (own['source']) links.push({ path: `${moduleDir}/${spec.kernel}/source`, target: own['source'] });
    const sigHash = own['sig'] === 'y' ? own['sighash'] : undefined;
    return {
      kernel: spec.kernel,
      mounts: facts.map((f, i) => ({ volume: names[i] as string, target: f['mount'] as string, readOnly: true })),
      links,
      moduleDir,
      ...(sigHash ? { sigHash } : {}),
      files: createHash('sha256').update(names.join('\n')).digest('hex').slice(0, 16),
    };
  }

  /**
   * Each volume's facts: from its marker, from the fill another target of this process is doing, or from
   * one fill of all of this kernel's missing volumes in one container (a container's start is most of a fill).
   */
  async #factsOf(names: string[], spec: KernelHeadersSpec, how: FillHow): Promise<Record<string, string>[]> {
    const markers = await Promise.all(
      names.map((name) => (this.#inflight.has(name) ? Promise.resolve(undefined) : this.engine.volume(`${name}.ok`))),
    );
    const missing = names
      .map((name, i) => ({ name, deb: spec.debs[i] as PackageFile }))
      .filter(({ name }, i) => !markers[i] && !this.#inflight.has(name));
    if (missing.length > 0) {
      const filling = this.#fillLocked(missing, spec, how);
      for (const { name } of missing)
        this.#inflight.set(
          name,
          filling.then((facts) => facts.get(name) ?? {}),
        );
    }
    return Promise.all(
      names.map((name, i) => {
        const marker = markers[i];
        if (marker) return Promise.resolve(factsIn(marker.labels));
        return this.#inflight.get(name) as Promise<Record<string, string>>;
      }),
    );
  }

  /** Under every volume's lock (in name order: no two processes wait for each other), what is still missing. */
  #fillLocked(items: FillItem[], spec: KernelHeadersSpec, how: FillHow): Promise<Map<string, Record<string, string>>> {
    const sorted = [...items].sort((a, b) => a.name.localeCompare(b.name));
    const locked = sorted.reduceRight<() => Promise<Map<string, Record<string, string>>>>(
      (inner, { name }) =>
        () =>
          withLock(this.options.lockDir, name, inner, how.signal),
      () => this.#fillMissing(sorted, spec, how),
    );
    return locked();
  }

  async #fillMissing(items: FillItem[], spec: KernelHeadersSpec, how: FillHow) {
    const result = new Map<string, Record<string, string>>();
    const markers = await Promise.all(items.map(({ name }) => this.engine.volume(`${name}.ok`)));
    const todo = items.filter(({ name }, i) => {
      const marker = markers[i];
      if (marker) result.set(name, factsIn(marker.labels));
      return !marker;
    });
    if (todo.length === 0) return result;
    for (const { deb } of todo) spec.onFill?.(`unpacking ${deb.package} ${deb.version}`);
    const paths = await how.fetch(todo.map(({ deb }) => deb));
    const filled = await this.options.limit(() => this.#fill(todo, paths, spec, how.signal));
    for (const [i, { name }] of todo.entries()) {
      const facts = filled[i] ?? {};
      const labels = Object.fromEntries(Object.entries(facts).map(([k, v]) => [FACT + k, v]));
      await this.engine.createVolume(`${name}.ok`, { [Label.role]: 'headers', ...labels });
      result.set(name, facts);
    }
    return result;
  }

  /** `kfarm-deb-<sha256>-<srcarch>-<script>`: the package's contents and how they were unpacked. */
  volumeName(deb: PackageFile, srcarch: string): string {
    return `kfarm-deb-${deb.sha256.slice(0, 24)}-${srcarch || 'all'}-${this.options.scriptHash.slice(0, 8)}`;
  }

  /** One container, every volume of `todo` under /kfarm/vol/<n>; resolves with each package's facts. */
  async #fill(todo: FillItem[], paths: string[], spec: KernelHeadersSpec, signal?: AbortSignal) {
    for (const { name } of todo) {
      await this.engine.removeVolume(name);
      await this.engine.createVolume(name, { [Label.role]: 'headers-files' });
    }
    const logPath = prepareLogPath(this.options.logDir, spec.ref);
    const files = paths.map((p) => basename(p));
    return withPrepareLog(logPath, async (log) => {
      const container = await this.engine.start(
        {
          image: spec.base,
          cmd: ['sleep', '3600'],
          network: 'none',
          hardened: true,
          volumes: todo.map(({ name }, n) => ({ volume: name, target: `/kfarm/vol/${n}`, readOnly: false })),
          labels: { [Label.role]: 'prepare', [Label.target]: spec.ref },
        },
        signal,
      );
      try {
        const facts = new FactLines(log);
        const pairs = files.flatMap((file, n) => [file, `/kfarm/vol/${n}`]);
        const code = await container.exec(['bash', '-c', this.options.script, 'unpack', spec.srcarch, ...pairs], {
          stdin: debsTar(paths),
          stdout: facts,
          stderr: log,
          ...(signal ? { signal } : {}),
        });
        if (code !== 0) {
          log.end();
          const reason = await reasonIn(logPath);
          throw new KfarmError(
            'KFARM_IMAGE_FAILED',
            `preparing ${spec.ref} failed: unpacking ${files.join(', ')} exited ${code} (log: ${logPath})${reason}`,
          );
        }
        return todo.map((_, n) => facts.facts.get(n) ?? {});
      } finally {
        this.engine.removeLater(container);
      }
    });
  }
}

/**
 * What the marker of a kernel's own headers volume records (`moddir`, `build`, `sighash`, …), found by the
 * kernel's name; undefined when the engine has none (its volumes were removed).
 */
export async function kernelHeadersFacts(engine: Engine, kernel: string): Promise<Record<string, string> | undefined> {
  const [marker] = await engine.volumes({ [Label.role]: 'headers', [`${FACT}kernel`]: kernel });
  return marker && factsIn(marker.labels);
}

function factsIn(labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(labels)
      .filter(([k]) => k.startsWith(FACT))
      .map(([k, v]) => [k.slice(FACT.length), v]),
  );
}

/** The .debs (all in the package cache's directory) as one tar stream. */
function debsTar(paths: string[]): Readable {
  const dir = dirname(paths[0] as string);
  return createTar(
    { cwd: dir, portable: true },
    paths.map((p) => basename(p)),
  ) as unknown as Readable;
}

/** The unpack script's stdout: into the log, and its `kfarm-fact <n> key=value` lines kept. */
class FactLines extends Writable {
  /** Package number → its facts. */
  readonly facts = new Map<number, Record<string, string>>();
  #partial = '';

  constructor(readonly log: Writable) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.log.write(chunk);
    const lines = (this.#partial + chunk.toString('utf8')).split('\n');
    this.#partial = lines.pop() ?? '';
    for (const line of lines) {
      const match = /^kfarm-fact (\d+) ([a-z-]+)=(.*)$/.exec(line);
      if (!match) continue;
      const n = Number(match[1]);
      const facts = this.facts.get(n) ?? {};
      facts[match[2] as string] = match[3] as string;
      this.facts.set(n, facts);
    }
    callback();
  }
}
