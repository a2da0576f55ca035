/**
 * dpkg's version ordering (deb-version(7)): `[epoch:]upstream[-revision]`, compared part by part. Plain string
 * or numeric comparison gets kernels wrong (`6.12.94-1` vs `6.12.117-1`, `7.2.11-1~bpo13+1` vs `7.2.11-1`).
 * Returns a negative number, zero or a positive number, like a sort comparator.
 */
export function compareDebianVersions(a: string, b: string): number {
  const left = splitVersion(a);
  const right = splitVersion(b);
  if (left.epoch !== right.epoch) return left.epoch < right.epoch ? -1 : 1;
  return Math.sign(compareFragment(left.upstream, right.upstream) || compareFragment(left.revision, right.revision));
}

function splitVersion(version: string): { epoch: number; upstream: string; revision: string } {
  const colon = version.indexOf(':');
  const epoch = colon > 0 ? Number(version.slice(0, colon)) : 0;
  const rest = version.slice(colon + 1);
  // The revision starts after the last hyphen: upstream versions may contain hyphens themselves.
  const hyphen = rest.lastIndexOf('-');
  return {
    epoch: Number.isFinite(epoch) ? epoch : 0,
    upstream: hyphen < 0 ? rest : rest.slice(0, hyphen),
    revision: hyphen < 0 ? '' : rest.slice(hyphen + 1),
  };
}

const isDigit = (c: string): boolean => c >= '0' && c <= '9';
const isLetter = (c: string): boolean => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');

/** Weight of one non-digit character: `~` before the end of the string, the end before letters, letters before the rest. */
function order(c: string): number {
  if (c === '' || isDigit(c)) return 0;
  if (c === '~') return -1;
  if (isLetter(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

/** dpkg's verrevcmp: alternate runs of non-digits (compared by `order`) and digits (compared numerically). */
function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(a.charAt(i))) || (j < b.length && !isDigit(b.charAt(j)))) {
      const diff = order(a.charAt(i)) - order(b.charAt(j));
      if (diff !== 0) return diff;
      i++;
      j++;
    }
    while (a.charAt(i) === '0') i++;
    while (b.charAt(j) === '0') j++;
    let firstDiff = 0;
    while (isDigit(a.charAt(i)) && isDigit(b.charAt(j))) {
      if (firstDiff === 0) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a.charAt(i))) return 1;
    if (isDigit(b.charAt(j))) return -1;
    if (firstDiff !== 0) return firstDiff;
  }
  return 0;
}

/**
 * The flavour of a Debian kernel release, `<version>[-<abi>]-<flavour>`: `6.1.0-57-amd64` → `amd64`,
 * `6.12.118+deb13-cloud-amd64` → `cloud-amd64`, `6.1.0-0.deb11.48-rt-amd64` → `rt-amd64`.
 */
export function kernelFlavour(kernel: string): string | undefined {
  return /^\d[^-]*(?:-\d[^-]*)?-([a-z].*)$/.exec(kernel)?.[1];
}

/**
 * A Debian kernel release without its flavour, as a version part that sorts like the kernels do:
 * `6.1.0-57-amd64` → `6.1.0.57`, `6.12.118+deb13-cloud-amd64` → `6.12.118+deb13`. Versions of packages that
 * follow kernels (metapackages, the `-dkms` package) end with it, so they rise with every newer kernel.
 */
export function kernelVersionKey(kernel: string): string {
  const flavour = kernelFlavour(kernel);
  return (flavour ? kernel.slice(0, -(flavour.length + 1)) : kernel).replace(/-/g, '.');
}
