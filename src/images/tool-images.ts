import { createHash } from 'node:crypto';
import type { ImageEvents } from '../model/events.js';
import { Label, type Engine } from '../engine/index.js';
import type { ImageStore } from './image-store.js';
import { withLock } from '../util/lock.js';
import { commitLayer, prepareLogPath } from './prepare.js';

/**
 * Tool images: a release's base image plus one Debian tool, for packaging and for testing packages with the
 * release's own tools (its dkms, its rpm, its lintian). Prepared like headers images (a layer committed
 * with labels), once per process, reused across runs when the labels say the image holds what is asked.
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

export class ToolImages {
  readonly #inflight = new Map<string, Promise<string>>();

  constructor(
    readonly engine: Engine,
    readonly images: ImageStore,
    readonly options: { logDir?: string; events?: ImageEvents } = {},
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
    const labels = await this.#labels(release, kind);
    if (await this.images.holds(ref, labels)) {
      this.options.events?.onReady?.(ref, 0, true);
      return ref;
    }
    const base = await this.images.base(release, signal);
    const started = Date.now();
    this.options.events?.onPrepare?.(ref, `${kind} tools for debian/${release}`);
    const logDir = this.options.logDir ?? this.images.options.logDir;
    // Under the same cross-process lock as the builder images: a second process waits, then finds it made.
    await withLock(
      this.images.lockDir,
      ref,
      async () => {
        if (await this.images.holds(ref, labels)) return;
        await commitLayer(this.engine, {
          base,
          ref,
          script: installScript,
          args: [...toolPackages[kind]],
          labels,
          logPath: prepareLogPath(logDir, ref),
          network: 'bridge',
          what: `apt-get install ${toolPackages[kind].join(' ')}`,
          ...(signal ? { signal } : {}),
        });
      },
      signal,
    );
    this.options.events?.onReady?.(ref, Date.now() - started, false);
    return ref;
  }

  async #labels(release: string, kind: ToolKind): Promise<Record<string, string>> {
    const recipe = await this.images.recipe();
    const hash = createHash('sha256')
      .update(TOOL_FORMAT)
      .update('\0')
      .update(recipe.baseHash)
      .update('\0')
      .update(installScript)
      .update('\0')
      .update(toolPackages[kind].join(' '));
    return {
      [Label.role]: 'tool',
      [Label.distro]: 'debian',
      [Label.release]: release,
      [toolLabel]: kind,
      [Label.recipe]: hash.digest('hex').slice(0, 16),
    };
  }
}
