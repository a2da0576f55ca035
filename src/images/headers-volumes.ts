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

  /** `fetch` gives verified local copies of .debs: called only for a volume that must be filled. */
  async kernel(
    spec: KernelHeadersSpec,
    how: { fetch: (files: PackageFile[]) => Promise<string[]>; signal?: AbortSignal },
  ): Promise<KernelHeaders> {
    const names = spec.debs.map((deb) => this.volumeName(deb, spec.srcarch));
    const facts = await Promise.all(
      spec.debs.map((deb, i) => this.#once(names[i] as string, () => this.#package(deb, spec, how))),
    );
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

  /** `kfarm-deb-<sha256>-<srcarch>-<script>`: the package's contents and how they were unpacked. */
  volumeName(deb: PackageFile, srcarch: string): string {
    return `kfarm-deb-${deb.sha256.slice(0, 24)}-${srcarch || 'all'}-${this.options.scriptHash.slice(0, 8)}`;
  }

  #once(name: string, work: () => Promise<Record<string, string>>): Promise<Record<string, string>> {
    let promise = this.#inflight.get(name);
    if (!promise) {
      promise = work();
      this.#inflight.set(name, promise);
    }
    return promise;
  }

  async #package(
    deb: PackageFile,
    spec: KernelHeadersSpec,
    how: { fetch: (files: PackageFile[]) => Promise<string[]>; signal?: AbortSignal },
  ): Promise<Record<string, string>> {
    const { signal } = how;
    const name = this.volumeName(deb, spec.srcarch);
    const ready = await this.engine.volume(`${name}.ok`);
    if (ready) return factsIn(ready.labels);
    return withLock(
      this.options.lockDir,
      name,
      async () => {
        const made = await this.engine.volume(`${name}.ok`);
        if (made) return factsIn(made.labels);
        spec.onFill?.(`unpacking ${deb.package} ${deb.version}`);
        const [path] = await how.fetch([deb]);
        const facts = await this.options.limit(() => this.#fill(name, path as string, spec, signal));
        const labels = Object.fromEntries(Object.entries(facts).map(([k, v]) => [FACT + k, v]));
        await this.engine.createVolume(`${name}.ok`, { [Label.role]: 'headers', ...labels });
        return facts;
      },
      signal,
    );
  }

  async #fill(name: string, path: string, spec: KernelHeadersSpec, signal?: AbortSignal) {
    await this.engine.removeVolume(name);
    await this.engine.createVolume(name, { [Label.role]: 'headers-files' });
    const logPath = prepareLogPath(this.options.logDir, name);
    return withPrepareLog(logPath, async (log) => {
      const container = await this.engine.start(
        {
          image: spec.base,
          cmd: ['sleep', '3600'],
          network: 'none',
          hardened: true,
          volumes: [{ volume: name, target: '/kfarm/vol', readOnly: false }],
          labels: { [Label.role]: 'prepare', [Label.target]: name },
        },
        signal,
      );
      try {
        const facts = new FactLines(log);
        const code = await container.exec(['bash', '-c', this.options.script, 'unpack', spec.srcarch], {
          stdin: debTar(path),
          stdout: facts,
          stderr: log,
          ...(signal ? { signal } : {}),
        });
        if (code !== 0) {
          log.end();
          const reason = await reasonIn(logPath);
          throw new KfarmError(
            'KFARM_IMAGE_FAILED',
            `preparing ${spec.ref} failed: unpacking ${basename(path)} exited ${code} (log: ${logPath})${reason}`,
          );
        }
        return facts.facts;
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

function debTar(path: string): Readable {
  return createTar({ cwd: dirname(path), portable: true }, [basename(path)]) as unknown as Readable;
}

/** The unpack script's stdout: into the log, and its `kfarm-fact key=value` lines kept. */
class FactLines extends Writable {
  readonly facts: Record<string, string> = {};
  #partial = '';

  constructor(readonly log: Writable) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.log.write(chunk);
    const lines = (this.#partial + chunk.toString('utf8')).split('\n');
    this.#partial = lines.pop() ?? '';
    for (const line of lines) {
      const match = /^kfarm-fact ([a-z-]+)=(.*)$/.exec(line);
      if (match) this.facts[match[1] as string] = match[2] as string;
    }
    callback();
  }
}
