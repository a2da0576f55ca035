import type { Engine } from '../engine/engine.js';
import { KfarmError } from '../model/errors.js';
import { kernelHeadersFacts } from '../images/headers-volumes.js';

/** What packaging needs to know about a target kernel, asked of the target release itself. */
export interface KernelFacts {
  /**
   * Where the release's kernel packages put modules: the directory its `linux-headers-<kver>` package ships
   * `<dir>/<kver>/build` in, as kfarm recorded it when it unpacked that package into a volume (bookworm
   * `/lib/modules`, trixie `/usr/lib/modules`, where lintian ≥ 2.121 reports `/lib` as an aliased location).
   */
  moduleDir: '/lib/modules' | '/usr/lib/modules';
  /** CONFIG_MODULE_SIG_HASH from the kernel's .config, when the kernel signs modules. */
  sigHash?: string;
  /** Set when the kernel's headers volumes were gone and `moduleDir` is the release's default. */
  headersMissing?: boolean;
}

/** Release defaults, used only when the target's headers volumes are gone and no signing is asked for. */
const releaseModuleDir: Record<string, KernelFacts['moduleDir']> = {
  buster: '/lib/modules',
  bullseye: '/lib/modules',
  bookworm: '/lib/modules',
};

/**
 * Reads what kfarm recorded when it unpacked each kernel's headers package into an engine volume (the
 * volume's marker labels): no container. One answer per kernel per process.
 */
export class KernelFactsCache {
  readonly #answers = new Map<string, Promise<KernelFacts>>();

  constructor(readonly engine: Engine) {}

  get(release: string, kernel: string, options: { needSigHash: boolean }): Promise<KernelFacts> {
    const key = `${release}\0${kernel}`;
    let answer = this.#answers.get(key);
    if (!answer) {
      answer = this.#ask(release, kernel);
      this.#answers.set(key, answer);
    }
    return answer.then((facts) => {
      if (options.needSigHash && facts.headersMissing) {
        return Promise.reject(
          new KfarmError(
            'KFARM_USAGE',
            `cannot sign modules for ${kernel}: its headers volumes are gone from the engine, ` +
              "and the kernel's CONFIG_MODULE_SIG_HASH is read from them (run kfarm build again)",
          ),
        );
      }
      if (options.needSigHash && !facts.sigHash) {
        return Promise.reject(
          new KfarmError(
            'KFARM_USAGE',
            `cannot sign modules for ${kernel}: its .config has no CONFIG_MODULE_SIG_HASH (the kernel does not check module signatures)`,
          ),
        );
      }
      return facts;
    });
  }

  async #ask(release: string, kernel: string): Promise<KernelFacts> {
    const facts = await kernelHeadersFacts(this.engine, kernel);
    if (!facts) return { moduleDir: releaseModuleDir[release] ?? '/usr/lib/modules', headersMissing: true };
    const moduleDir = facts['moddir'];
    if (moduleDir !== '/lib/modules' && moduleDir !== '/usr/lib/modules')
      throw new KfarmError(
        'KFARM_IMAGE_FAILED',
        `the headers of ${kernel} shipped no <moddir>/${kernel}/build, so the release's module directory is unknown`,
      );
    const sigHash = facts['sig'] === 'y' ? facts['sighash'] : undefined;
    return { moduleDir, ...(sigHash ? { sigHash } : {}) };
  }
}
