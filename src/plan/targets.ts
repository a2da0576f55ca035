import { KfarmError } from '../model/errors.js';
export type { KernelTarget } from '../model/target.js';

export interface TargetId {
  distro: string;
  release: string;
  kernel: string;
}

const EXAMPLE = 'debian/bookworm/6.1.0-47-amd64';

/**
 * Checks the shape only; whether the release and kernel exist is discovery's business. The character sets keep
 * ids safe to use in image tags, paths and shell words.
 */
export function parseTargetId(id: string): TargetId {
  const match = /^([a-z][a-z0-9-]*)\/([a-z][a-z0-9.-]*)\/([0-9][A-Za-z0-9.+~_-]*)$/.exec(id);
  if (!match?.[1] || !match[2] || !match[3]) {
    throw new KfarmError(
      'KFARM_USAGE',
      `--target ${JSON.stringify(id)}: expected <distro>/<release>/<kernel-release>, e.g. ${EXAMPLE}`,
    );
  }
  return { distro: match[1], release: match[2], kernel: match[3] };
}

export function formatTargetId(target: TargetId): string {
  return `${target.distro}/${target.release}/${target.kernel}`;
}
