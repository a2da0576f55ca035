import { KfarmError } from '../model/errors.js';
import {
  discoverReleaseIndex,
  type KernelImage,
  type ReleaseIndex,
  type ReleaseDiscoveryOptions,
} from '../plan/debian-index.js';
import { flavourOf } from '../plan/debian-packages.js';
import { debianSuites } from '../plan/debian-releases.js';
import { compareDebianVersions } from '../util/debian-version.js';

export type { KernelImage } from '../plan/debian-index.js';

export interface KernelImageLookupOptions extends Pick<
  ReleaseDiscoveryOptions,
  'cacheDir' | 'mirror' | 'securityMirror' | 'verifySignature' | 'signal'
> {
  /** Test seam: how a release's index is obtained. Default: discoverReleaseIndex (cached for an hour). */
  discover?: (release: string, options: ReleaseDiscoveryOptions) => Promise<ReleaseIndex>;
}

/**
 * The kernel image package to boot for `kernel` of `release`: `linux-image-<kver>` (Debian's signed build)
 * when the archive has it, else `linux-image-<kver>-unsigned` — same kernel, same modules, different
 * packaging. The newest version across the release's suites (backports included) wins.
 */
export async function findKernelImage(
  release: string,
  kernel: string,
  options: KernelImageLookupOptions = {},
): Promise<KernelImage> {
  const flavour = flavourOf(kernel);
  if (!flavour)
    throw new KfarmError(
      'KFARM_TARGET_UNKNOWN',
      `kernel ${kernel}: not a flavour kfarm knows (amd64, cloud-amd64, rt-amd64)`,
    );
  const { discover = discoverReleaseIndex, ...rest } = options;
  const index = await discover(release, { ...rest, flavours: [flavour], includeBackports: true });
  const found = pickImage(index.images ?? [], kernel);
  if (found) return found;
  const suites = debianSuites(release, options)
    .map((s) => s.name)
    .join(', ');
  throw new KfarmError(
    'KFARM_TARGET_UNKNOWN',
    `no linux-image-${kernel} or linux-image-${kernel}-unsigned in ${suites}: cannot boot ${release}/${kernel}`,
  );
}

/** Signed before unsigned; within each, the newest version. */
export function pickImage(images: readonly KernelImage[], kernel: string): KernelImage | undefined {
  return images
    .filter((image) => image.kernel === kernel)
    .sort((a, b) => Number(a.unsigned) - Number(b.unsigned) || compareDebianVersions(b.version, a.version))[0];
}
