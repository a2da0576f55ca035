import { resolve } from 'node:path';
import { KfarmError } from '../model/errors.js';
import { parseSourceDateEpoch } from '../util/source-date-epoch.js';
import { publishApt, type AptDistribution } from './apt-repo.js';
import { readPublishInputs } from './inputs.js';
import { Signer } from './signer.js';
import { requireTool } from './tools.js';
import { publishYum } from './yum-repo.js';

export { metaVersion, planDistribution, type DebFacts } from './apt-layout.js';
export type { AptDistribution } from './apt-repo.js';

export interface PublishOptions {
  /** Output directories of `kfarm build`/`kfarm package` whose .deb and .rpm files are published. */
  outs: string[];
  /** apt repository directory (made when missing). */
  apt?: string;
  /** yum/dnf repository directory (made when missing). */
  yum?: string;
  /** A file holding an OpenPGP secret key, or a key ID/fingerprint of the user's keyring (their gpg-agent). */
  gpgKey: string;
  /** Per module and kernel flavour, keep the packages of the newest N kernels in each apt distribution. */
  keepKernels?: number;
  /** `Origin`/`Label` of the apt Release files (default "kfarm"). */
  origin?: string;
  /** Dates of indexes and signatures; default SOURCE_DATE_EPOCH from `env`, else now. */
  sourceDateEpoch?: number;
  env?: NodeJS.ProcessEnv;
  log?: (line: string) => void;
}

export interface PublishResult {
  apt?: AptDistribution[];
  yum?: string[];
}

/**
 * Publishes build outputs' packages into signed repositories users install from: `--apt` (per-kernel .debs, the
 * `<module>-dkms` .deb, metapackages that follow the kernel) and/or `--yum` (.rpm). Everything is checked (flags,
 * tools, key, inputs) before either repository is touched.
 */
export async function publish(options: PublishOptions): Promise<PublishResult> {
  const epoch = checkPublishOptions(options);
  if (options.apt) {
    await requireTool('apt-ftparchive', 'apt-utils', '--apt');
    await requireTool('dpkg-deb', 'dpkg', '--apt');
    await requireTool('xz', 'xz-utils', '--apt');
  }
  if (options.yum) {
    await requireTool('createrepo_c', 'createrepo-c', '--yum');
    await requireTool('rpmsign', 'rpm', '--yum');
  }
  const inputs = await readPublishInputs(options.outs);
  if (options.apt && inputs.debs.length === 0) throw new KfarmError('KFARM_USAGE', '--apt: the outputs hold no .deb');
  if (options.yum && inputs.rpms.length === 0) throw new KfarmError('KFARM_USAGE', '--yum: the outputs hold no .rpm');
  const signer = await Signer.open(options.gpgKey, options.env ?? process.env);
  try {
    const log = options.log ?? (() => undefined);
    const result: PublishResult = {};
    if (options.apt) {
      const origin = options.origin ?? 'kfarm';
      const keep = options.keepKernels === undefined ? {} : { keepKernels: options.keepKernels };
      result.apt = await publishApt(resolve(options.apt), inputs.debs, { signer, epoch, origin, log, ...keep });
    }
    if (options.yum) result.yum = await publishYum(resolve(options.yum), inputs.rpms, { signer, epoch, log });
    return result;
  } finally {
    await signer.close();
  }
}

function checkPublishOptions(options: PublishOptions): number {
  if (!options.apt && !options.yum)
    throw new KfarmError('KFARM_USAGE', 'kfarm publish: give --apt DIR and/or --yum DIR');
  if (options.apt && options.yum && resolve(options.apt) === resolve(options.yum))
    throw new KfarmError('KFARM_USAGE', `--apt and --yum: one directory each (${options.apt})`);
  if (!options.gpgKey)
    throw new KfarmError('KFARM_USAGE', '--gpg-key: required (apt and dnf refuse unsigned repositories)');
  const keep = options.keepKernels;
  if (keep !== undefined && (!Number.isSafeInteger(keep) || keep < 1))
    throw new KfarmError('KFARM_USAGE', `--keep-kernels ${keep}: expected a whole number of at least 1`);
  if (options.origin !== undefined && !/^[A-Za-z0-9][A-Za-z0-9 ._+-]*$/.test(options.origin))
    throw new KfarmError(
      'KFARM_USAGE',
      `--origin ${JSON.stringify(options.origin)}: letters, digits, space and ._+- only`,
    );
  if (options.sourceDateEpoch !== undefined) return options.sourceDateEpoch;
  const raw = (options.env ?? process.env)['SOURCE_DATE_EPOCH'];
  return raw === undefined ? Math.floor(Date.now() / 1000) : parseSourceDateEpoch(raw);
}
