import { Writable } from 'node:stream';
import type { Engine } from '../engine/engine.js';
import { Label } from '../engine/labels.js';
import { KfarmError } from '../model/errors.js';
import { headersRef } from '../images/image-store.js';

/** What packaging needs to know about a target kernel, asked of the target release itself. */
export interface KernelFacts {
  /**
   * Where the release's kernel packages put modules: the directory its `linux-headers-<kver>` package ships
   * `<dir>/<kver>/build` in, as the builder image recorded it when it unpacked that package (bookworm
   * `/lib/modules`, trixie `/usr/lib/modules`, where lintian ≥ 2.121 reports `/lib` as an aliased location).
   */
  moduleDir: '/lib/modules' | '/usr/lib/modules';
  /** CONFIG_MODULE_SIG_HASH from the kernel's .config, when the kernel signs modules. */
  sigHash?: string;
  /** Set when the builder image was gone and `moduleDir` is the release's default. */
  imageMissing?: string;
}

const query = `set -u
k=$1
[ -r "/var/lib/kfarm/moddir/$k" ] && echo "moddir=$(cat "/var/lib/kfarm/moddir/$k")"
sed -n 's/^CONFIG_MODULE_SIG_HASH="\\([A-Za-z0-9-]*\\)"$/sighash=\\1/p' "/lib/modules/$k/build/.config"
grep -q '^CONFIG_MODULE_SIG=y' "/lib/modules/$k/build/.config" && echo sig=y
exit 0
`;

/** Release defaults, used only when the target's builder image is gone and no signing is asked for. */
const releaseModuleDir: Record<string, KernelFacts['moduleDir']> = {
  buster: '/lib/modules',
  bullseye: '/lib/modules',
  bookworm: '/lib/modules',
};

/**
 * Asks each kernel's builder image (`kfarm/debian-<release>:<kver>`, which holds that kernel's headers package
 * and .config) in a throw-away container with no network and no capabilities. One answer per kernel per
 * process.
 */
export class KernelFactsCache {
  readonly #answers = new Map<string, Promise<KernelFacts>>();

  constructor(readonly engine: Engine) {}

  get(
    release: string,
    kernel: string,
    options: { image?: string; needSigHash: boolean; signal?: AbortSignal },
  ): Promise<KernelFacts> {
    const image = options.image ?? headersRef(release, kernel);
    const key = `${image}\0${kernel}`;
    let answer = this.#answers.get(key);
    if (!answer) {
      answer = this.#ask(image, release, kernel, options.signal);
      this.#answers.set(key, answer);
    }
    return answer.then((facts) => {
      if (options.needSigHash && facts.imageMissing) {
        return Promise.reject(
          new KfarmError(
            'KFARM_USAGE',
            `cannot sign modules for ${kernel}: its builder image ${facts.imageMissing} is gone, ` +
              "and the kernel's CONFIG_MODULE_SIG_HASH is read from it (run kfarm build again)",
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

  async #ask(image: string, release: string, kernel: string, signal?: AbortSignal): Promise<KernelFacts> {
    if ((await this.engine.image(image)) === undefined) {
      const fallback = releaseModuleDir[release] ?? '/usr/lib/modules';
      return { moduleDir: fallback, imageMissing: image };
    }
    const container = await this.engine.start(
      {
        image,
        cmd: ['sleep', '300'],
        network: 'none',
        hardened: true,
        labels: { [Label.role]: 'package', [Label.target]: `${release}/${kernel}` },
      },
      signal,
    );
    try {
      const out = new TextSink();
      const code = await container.exec(['bash', '-c', query, 'kernel-facts', kernel], {
        stdout: out,
        stderr: out,
        ...(signal ? { signal } : {}),
      });
      if (code !== 0)
        throw new KfarmError(
          'KFARM_IMAGE_FAILED',
          `asking ${image} about kernel ${kernel} failed (exit ${code}): ${out.text.trim().split('\n').pop() ?? ''}`,
        );
      const values = new Map(out.text.split('\n').map((line) => line.split('=', 2) as [string, string]));
      const moduleDir = values.get('moddir');
      if (moduleDir !== '/lib/modules' && moduleDir !== '/usr/lib/modules') {
        throw new KfarmError(
          'KFARM_IMAGE_FAILED',
          `${image}: its headers package shipped no <moddir>/${kernel}/build, so the release's module directory is unknown`,
        );
      }
      const sigHash = values.get('sig') === 'y' ? values.get('sighash') : undefined;
      return { moduleDir, ...(sigHash ? { sigHash } : {}) };
    } finally {
      await container.remove();
    }
  }
}

class TextSink extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    if (this.text.length < 65536) this.text += chunk.toString('utf8');
    callback();
  }
}
