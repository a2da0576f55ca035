import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KfarmError } from '../errors.js';
import type { Engine } from '../engine/engine.js';
import { Label } from '../engine/labels.js';
import type { ImageStore } from './image-store.js';

/**
 * Tool images: a release's base image plus one Debian tool, for packaging and for testing packages with the
 * release's own tools (its dkms, its rpm, its lintian). Prepared like headers images: a container of
 * `kfarm/debian:<release>` with network, apt-get, commit with labels; once per process, reused across runs
 * when the labels say the image holds what is asked.
 */
export type ToolKind = 'dkms' | 'rpm' | 'lintian';

export const toolPackages: Record<ToolKind, readonly string[]> = {
  // dkms recommends the running kernel's headers and pulls build-essential: --no-install-recommends keeps
  // only what `dkms ldtarball/status/install` need.
  dkms: ['dkms'],
  // rpmbuild lives in Debian's `rpm` package (it depends on rpm2cpio, debugedit and the rpm tools).
  rpm: ['rpm'],
  lintian: ['lintian'],
};

/** Extra label: which tool the image holds. */
export const toolLabel = 'kfarm.tool';

/** Bumped when the recipe below changes. */
const TOOL_FORMAT = '1';

const installScript = `set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get -q update
apt-get install -y -q --no-install-recommends "$@"
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
`;

export function toolRef(release: string, kind: ToolKind): string {
  return `kfarm/tools-${release}:${kind}`;
}

export interface ToolImageEvents {
  onPrepare?: (ref: string, what: string) => void;
  onReady?: (ref: string, ms: number, reused: boolean) => void;
}

export class ToolImages {
  readonly #inflight = new Map<string, Promise<string>>();

  constructor(
    readonly engine: Engine,
    readonly images: ImageStore,
    readonly options: { logDir: string; events?: ToolImageEvents } = { logDir: join(images.options.logDir, 'tools') },
  ) {}

  /** Resolves with the ref of `kfarm/tools-<release>:<kind>`, preparing it when missing or stale. */
  get(release: string, kind: ToolKind, signal?: AbortSignal): Promise<string> {
    const ref = toolRef(release, kind);
    let promise = this.#inflight.get(ref);
    if (!promise) {
      promise = this.#ensure(ref, release, kind, signal);
      this.#inflight.set(ref, promise);
    }
    return promise;
  }

  async #ensure(ref: string, release: string, kind: ToolKind, signal?: AbortSignal): Promise<string> {
    const recipe = await this.images.recipe();
    const hash = createHash('sha256')
      .update(TOOL_FORMAT)
      .update('\0')
      .update(recipe.hash)
      .update('\0')
      .update(installScript)
      .update('\0');
    hash.update(toolPackages[kind].join(' '));
    const want = {
      [Label.role]: 'tool',
      [Label.distro]: 'debian',
      [Label.release]: release,
      [toolLabel]: kind,
      [Label.recipe]: hash.digest('hex').slice(0, 16),
    };
    const labels = await this.engine.imageLabels(ref);
    if (labels !== undefined && Object.entries(want).every(([k, v]) => labels[k] === v)) {
      this.options.events?.onReady?.(ref, 0, true);
      return ref;
    }
    const base = await this.images.base(release, signal);
    const started = Date.now();
    this.options.events?.onPrepare?.(ref, `${kind} tools for debian/${release}`);
    await mkdir(this.options.logDir, { recursive: true });
    const logPath = join(this.options.logDir, `${ref.replace(/[^A-Za-z0-9_.-]/g, '_')}.log`);
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
      const code = await container.exec(['bash', '-c', installScript, 'install-tools', ...toolPackages[kind]], {
        stdout: log,
        stderr: log,
        ...(signal ? { signal } : {}),
      });
      if (code !== 0) {
        await new Promise<void>((resolve) => log.end(resolve));
        const text = await readFile(logPath, 'utf8').catch(() => '');
        const why = text
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => /^E:/.test(l))
          .pop();
        throw new KfarmError(
          'KFARM_IMAGE_FAILED',
          `preparing ${ref} failed: apt-get install ${toolPackages[kind].join(' ')} exited ${code} (log: ${logPath})${why ? `: ${why}` : ''}`,
        );
      }
      await this.engine.commit(container, ref, want);
    } finally {
      log.end();
      await container.remove();
    }
    this.options.events?.onReady?.(ref, Date.now() - started, false);
    return ref;
  }
}
