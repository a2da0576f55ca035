import { KfarmError } from '../model/errors.js';

export const DEFAULT_DEBIAN_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_DEBIAN_SECURITY_MIRROR = 'http://deb.debian.org/debian-security';

export interface MirrorOptions {
  /** Main archive; else `KFARM_DEBIAN_MIRROR`, else deb.debian.org. */
  mirror?: string;
  /** Security archive; else `KFARM_DEBIAN_SECURITY_MIRROR`, else deb.debian.org. */
  securityMirror?: string;
}

interface SuiteTemplate {
  /** Appended to the codename: `''`, `-updates`, `-security`, `-backports`. */
  suffix: string;
  archive: 'main' | 'security';
  backports: boolean;
  /**
   * `-updates` is emptied at every point release (forky-updates is empty today), so an empty index there is the
   * archive's real state, not a truncated download; elsewhere an empty index means something went wrong.
   */
  mayBeEmpty: boolean;
}

const release: SuiteTemplate = { suffix: '', archive: 'main', backports: false, mayBeEmpty: false };
const updates: SuiteTemplate = { suffix: '-updates', archive: 'main', backports: false, mayBeEmpty: true };
const security: SuiteTemplate = { suffix: '-security', archive: 'security', backports: false, mayBeEmpty: false };
const backports: SuiteTemplate = { suffix: '-backports', archive: 'main', backports: true, mayBeEmpty: false };

/**
 * Releases in the order reports list them, oldest first. bullseye-backports is gone from the mirror (404).
 * Testing and unstable get no security or backports uploads: forky-security exists but is empty.
 */
const RELEASES: ReadonlyArray<{ codename: string; suites: readonly SuiteTemplate[] }> = [
  { codename: 'bullseye', suites: [release, updates, security] },
  { codename: 'bookworm', suites: [release, updates, security, backports] },
  { codename: 'trixie', suites: [release, updates, security, backports] },
  { codename: 'forky', suites: [release] },
  { codename: 'sid', suites: [release] },
];

export const DEBIAN_RELEASES: readonly string[] = RELEASES.map((r) => r.codename);

export interface DebianSuite {
  /** e.g. `bookworm-security`. */
  name: string;
  /** Archive root holding `dists/<name>/`, without a trailing slash. */
  archiveUrl: string;
  backports: boolean;
  mayBeEmpty: boolean;
}

/** The suites of `codename` where kernel headers may be published, in table order (release suite first). */
export function debianSuites(codename: string, options: MirrorOptions = {}): DebianSuite[] {
  const entry = RELEASES.find((r) => r.codename === codename);
  if (!entry) {
    throw new KfarmError(
      'KFARM_TARGET_UNKNOWN',
      `unknown Debian release "${codename}": expected one of ${DEBIAN_RELEASES.join(', ')}`,
    );
  }
  const main = trimSlash(options.mirror ?? envOr('KFARM_DEBIAN_MIRROR', DEFAULT_DEBIAN_MIRROR));
  const securityMirror = trimSlash(
    options.securityMirror ?? envOr('KFARM_DEBIAN_SECURITY_MIRROR', DEFAULT_DEBIAN_SECURITY_MIRROR),
  );
  return entry.suites.map((t) => ({
    name: codename + t.suffix,
    archiveUrl: t.archive === 'security' ? securityMirror : main,
    backports: t.backports,
    mayBeEmpty: t.mayBeEmpty,
  }));
}

/** The suites apt installs from by default (backports are opt-in), as messages name them: `trixie, trixie-updates, …`. */
export function defaultSuiteNames(codename: string, options: MirrorOptions = {}): string {
  return debianSuites(codename, options)
    .filter((s) => !s.backports)
    .map((s) => s.name)
    .join(', ');
}

/** The archive components of a release: non-free-firmware was split out of non-free in bookworm. */
export function releaseComponents(codename: string): string[] {
  const base = ['main', 'contrib', 'non-free'];
  return codename === 'bullseye' ? base : [...base, 'non-free-firmware'];
}

/** Position of a release in the table, for sorting; unknown releases sort last. */
export function debianReleaseRank(codename: string): number {
  const index = DEBIAN_RELEASES.indexOf(codename);
  return index < 0 ? DEBIAN_RELEASES.length : index;
}

function envOr(name: string, fallback: string): string {
  const value = process.env[name];
  return value === undefined || value === '' ? fallback : value;
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

/** One line of a builder image's sources.list: where a release's packages come from. */
export interface SuiteSource {
  suite: string;
  archive: string;
  backports: boolean;
}

/** Where a release's packages come from: the base image's sources.list. */
export function releaseSources(release: string): SuiteSource[] {
  return debianSuites(release).map((s) => ({ suite: s.name, archive: s.archiveUrl, backports: s.backports }));
}
