import { KfarmError } from '../model/errors.js';
import { FLAVOURS, type Flavour } from '../model/target.js';
export { FLAVOURS, type Flavour } from '../model/target.js';
import { compareDebianVersions } from '../util/debian-version.js';

/** The fields of a Packages stanza that kernel discovery needs; the rest are dropped while parsing. */
export interface PackageStanza {
  package: string;
  version: string;
  source?: string;
  depends?: string;
  /** Virtual packages this one provides (`Provides:`), as written. */
  provides?: string;
  filename?: string;
  sha256?: string;
  size?: number;
}

type KeptField = keyof PackageStanza;
const KEPT = new Set<string>(['package', 'version', 'source', 'depends', 'provides', 'filename', 'sha256', 'size']);

/**
 * Streams the stanzas of a deb822 Packages file. `text` is either the whole file or its text in chunks of any
 * size (e.g. a decompressor's stdout): lines may straddle chunks. Only the current stanza is held in memory,
 * so a 50 MB index costs no more than a small one.
 */
export async function* parsePackages(text: AsyncIterable<string> | string): AsyncGenerator<PackageStanza> {
  const parser = new StanzaParser();
  if (typeof text === 'string') {
    yield* parser.push(text);
  } else {
    for await (const chunk of text) yield* parser.push(chunk);
  }
  yield* parser.end();
}

class StanzaParser {
  private partial = '';
  private fields = new Map<KeptField, string>();
  private current: KeptField | undefined;
  private seenField = false;

  push(chunk: string): PackageStanza[] {
    const lines = (this.partial + chunk).split('\n');
    this.partial = lines.pop() ?? '';
    const done: PackageStanza[] = [];
    for (const line of lines) {
      const stanza = this.line(line);
      if (stanza) done.push(stanza);
    }
    return done;
  }

  end(): PackageStanza[] {
    const done = this.push('\n');
    const last = this.finish();
    if (last) done.push(last);
    return done;
  }

  private line(line: string): PackageStanza | undefined {
    if (line.trim() === '') return this.finish();
    this.seenField = true;
    if (line.startsWith(' ') || line.startsWith('\t')) {
      // A folded field: only the kept ones matter, and for those (Depends, Provides) a fold is just whitespace.
      if (this.current) this.fields.set(this.current, `${this.fields.get(this.current) ?? ''} ${line.trim()}`);
      return undefined;
    }
    const colon = line.indexOf(':');
    if (colon <= 0)
      throw new KfarmError('KFARM_MALFORMED', `malformed Packages line: ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).toLowerCase();
    this.current = KEPT.has(name) ? (name as KeptField) : undefined;
    if (this.current) this.fields.set(this.current, line.slice(colon + 1).trim());
    return undefined;
  }

  private finish(): PackageStanza | undefined {
    const fields = this.fields;
    const seen = this.seenField;
    this.fields = new Map();
    this.current = undefined;
    this.seenField = false;
    if (!seen) return undefined;
    const name = fields.get('package');
    if (!name) throw new KfarmError('KFARM_MALFORMED', 'Packages stanza without a Package field');
    const version = fields.get('version');
    if (!version) throw new KfarmError('KFARM_MALFORMED', `Packages stanza for ${name} has no Version`);
    const stanza: PackageStanza = { package: name, version };
    for (const key of ['source', 'depends', 'provides', 'filename', 'sha256'] as const) {
      const value = fields.get(key);
      if (value !== undefined) stanza[key] = value;
    }
    const size = fields.get('size');
    if (size !== undefined) {
      if (!/^\d+$/.test(size))
        throw new KfarmError('KFARM_MALFORMED', `Packages stanza for ${name} has a malformed Size: ${size}`);
      stanza.size = Number(size);
    }
    return stanza;
  }
}

/** One `linux-headers-<kver>` binary package of one suite. */
export interface SuiteKernel {
  kernel: string;
  flavour: Flavour;
  headersPackage: string;
  headersVersion: string;
  /** The `linux-headers-*-common[-rt]` package the headers depend on. */
  commonPackage: string;
  /** e.g. `gcc-12`, when the headers name the compiler the kernel was built with. */
  compiler?: string;
  /** The headers, -common and linux-kbuild .debs of this suite, when the index lists all three. */
  files?: SuiteFile[];
  suite: string;
  /** Source package name, without version: `linux`, `linux-6.1`. */
  source: string;
}

/** What the `linux-headers-<flavour>` metapackage of a suite points at: the kernel `apt install` would pick. */
export interface SuiteDefault {
  flavour: Flavour;
  metapackage: string;
  version: string;
  kernel: string;
}

/**
 * One `linux-image-<kver>` (signed) or `linux-image-<kver>-unsigned` binary package of one suite: the kernel
 * image and modules `kfarm verify` boots. Only packages carrying a Filename, SHA256 and Size are kept.
 */
export interface SuiteImage {
  kernel: string;
  package: string;
  version: string;
  /** true for `linux-image-<kver>-unsigned`. */
  unsigned: boolean;
  /** Path of the .deb relative to the archive root (`pool/...`). */
  filename: string;
  sha256: string;
  size: number;
  suite: string;
}

/** A .deb of a suite: its index entry's Filename (relative to the archive root), SHA256 and Size. */
export interface SuiteFile {
  package: string;
  version: string;
  filename: string;
  sha256: string;
  size: number;
}

export interface SuiteIndex {
  suite: string;
  /** Stanzas in the index, kernel or not: zero means an empty (or broken) index. */
  packages: number;
  kernels: SuiteKernel[];
  defaults: SuiteDefault[];
  /** Kernel image packages, newest version per package; absent when the suite has none. */
  images?: SuiteImage[];
}

const HEADERS = 'linux-headers-';
const KBUILD = 'linux-kbuild-';
const IMAGE = 'linux-image-';
const UNSIGNED = '-unsigned';

/** Longest suffix first: `6.1.0-47-cloud-amd64` also ends in `-amd64`. */
const BY_SUFFIX_LENGTH = [...FLAVOURS].sort((a, b) => b.length - a.length);

export function flavourOf(kernel: string): Flavour | undefined {
  return BY_SUFFIX_LENGTH.find((flavour) => kernel.endsWith(`-${flavour}`));
}

/** Picks the kernel headers and their metapackages out of a suite's stanzas. */
export async function kernelsFromPackages(
  stanzas: AsyncIterable<PackageStanza> | Iterable<PackageStanza>,
  suite: string,
): Promise<SuiteIndex> {
  const kernels = new Map<string, SuiteKernel>();
  const defaults = new Map<Flavour, SuiteDefault>();
  const images = new Map<string, SuiteImage>();
  const files = new Map<string, SuiteFile>();
  const kbuildOf = new Map<string, string>();
  let packages = 0;
  for await (const stanza of stanzas) {
    packages++;
    keepBuildFile(files, stanza);
    if (stanza.package.startsWith(IMAGE)) {
      const image = imageOf(stanza, suite);
      if (image) keepNewest(images, image.package, image, (i) => i.version);
      continue;
    }
    if (!stanza.package.startsWith(HEADERS)) continue;
    const rest = stanza.package.slice(HEADERS.length);
    const deps = dependencyNames(stanza.depends ?? '');
    const meta = FLAVOURS.find((flavour) => flavour === rest);
    if (meta) {
      const kernel = deps.map(kernelOfHeaders).find((k) => k !== undefined && flavourOf(k) === meta);
      if (!kernel)
        throw new KfarmError(
          'KFARM_INDEX_UNAVAILABLE',
          `${stanza.package} ${stanza.version} depends on no ${meta} kernel headers`,
        );
      const entry = { flavour: meta, metapackage: stanza.package, version: stanza.version, kernel };
      keepNewest(defaults, meta, entry, (d) => d.version);
      continue;
    }
    const flavour = flavourOf(rest);
    if (!flavour || !/^\d/.test(rest)) continue;
    // Versioned metapackages (`linux-headers-6.12-amd64`) point at real headers instead of shipping any.
    if (deps.some((dep) => kernelOfHeaders(dep) !== undefined)) continue;
    const commonPackage = deps.find((dep) => dep.startsWith(HEADERS) && /-common(-rt)?$/.test(dep));
    if (!commonPackage)
      throw new KfarmError(
        'KFARM_INDEX_UNAVAILABLE',
        `${stanza.package} ${stanza.version} depends on no linux-headers-*-common package`,
      );
    const kbuild = deps.find((dep) => dep.startsWith(KBUILD));
    if (kbuild) kbuildOf.set(`${rest}\0${stanza.version}`, kbuild);
    const kernel = suiteKernel(stanza, { kernel: rest, flavour, commonPackage, suite }, deps);
    keepNewest(kernels, rest, kernel, (k) => k.headersVersion);
  }
  const found = [...kernels.values()].map((k) => withFiles(k, files, kbuildOf.get(`${k.kernel}\0${k.headersVersion}`)));
  const index: SuiteIndex = { suite, packages, kernels: found, defaults: [...defaults.values()] };
  if (images.size > 0) index.images = [...images.values()];
  return index;
}

/**
 * `linux-image-6.1.0-56-amd64` and `linux-image-6.1.0-56-amd64-unsigned` → an image; metapackages
 * (`linux-image-amd64`, versioned `linux-image-6.12-amd64`), `-dbg` packages and signing templates → undefined.
 */
function imageOf(stanza: PackageStanza, suite: string): SuiteImage | undefined {
  let rest = stanza.package.slice(IMAGE.length);
  const unsigned = rest.endsWith(UNSIGNED);
  if (unsigned) rest = rest.slice(0, -UNSIGNED.length);
  if (!/^\d/.test(rest) || !flavourOf(rest)) return undefined;
  // Versioned metapackages depend on the real image instead of shipping one.
  if (dependencyNames(stanza.depends ?? '').some((dep) => dep.startsWith(IMAGE) && /^\d/.test(dep.slice(IMAGE.length))))
    return undefined;
  if (!stanza.filename || !stanza.sha256 || stanza.size === undefined) return undefined;
  return {
    kernel: rest,
    package: stanza.package,
    version: stanza.version,
    unsigned,
    filename: stanza.filename,
    sha256: stanza.sha256,
    size: stanza.size,
    suite,
  };
}

function suiteKernel(
  stanza: PackageStanza,
  found: Pick<SuiteKernel, 'kernel' | 'flavour' | 'commonPackage' | 'suite'>,
  deps: string[],
): SuiteKernel {
  const compiler = deps.map(compilerOf).find((c) => c !== undefined);
  return {
    kernel: found.kernel,
    flavour: found.flavour,
    headersPackage: stanza.package,
    headersVersion: stanza.version,
    commonPackage: found.commonPackage,
    ...(compiler ? { compiler } : {}),
    suite: found.suite,
    source: (stanza.source ?? stanza.package).replace(/\s*\(.*$/, ''),
  };
}

/** Headers and kbuild .debs, newest version per package (and the exact versions headers ask for, keyed by both). */
function keepBuildFile(files: Map<string, SuiteFile>, stanza: PackageStanza): void {
  if (!stanza.package.startsWith(HEADERS) && !stanza.package.startsWith(KBUILD)) return;
  if (!stanza.filename || !stanza.sha256 || stanza.size === undefined) return;
  const file: SuiteFile = {
    package: stanza.package,
    version: stanza.version,
    filename: stanza.filename,
    sha256: stanza.sha256,
    size: stanza.size,
  };
  files.set(`${file.package}\0${file.version}`, file);
  keepNewest(files, file.package, file, (f) => f.version);
}

/**
 * A kernel's three .debs: its headers and -common at the headers' version (the headers depend on `=` that), and
 * the newest linux-kbuild the suite has (they depend on `>=`). Without all three, none: the kernel is still a
 * target, and preparing it says what the index lacked.
 */
function withFiles(kernel: SuiteKernel, files: Map<string, SuiteFile>, kbuild: string | undefined): SuiteKernel {
  const wanted = [
    files.get(`${kernel.headersPackage}\0${kernel.headersVersion}`),
    files.get(`${kernel.commonPackage}\0${kernel.headersVersion}`),
    kbuild === undefined ? undefined : files.get(kbuild),
  ];
  if (wanted.some((f) => f === undefined)) return kernel;
  return { ...kernel, files: wanted as SuiteFile[] };
}

function keepNewest<K, V>(map: Map<K, V>, key: K, value: V, version: (v: V) => string): void {
  const old = map.get(key);
  if (!old || compareDebianVersions(version(value), version(old)) > 0) map.set(key, value);
}

/** Package names of a Depends field, alternatives included, without version constraints or arch qualifiers. */
function dependencyNames(depends: string): string[] {
  return depends
    .split(/[,|]/)
    .map((clause) => /^\s*([a-z0-9][a-z0-9+.-]*)/.exec(clause)?.[1])
    .filter((name): name is string => name !== undefined);
}

/** `linux-headers-6.1.0-47-amd64` → `6.1.0-47-amd64`; anything else → undefined. */
function kernelOfHeaders(name: string): string | undefined {
  if (!name.startsWith(HEADERS)) return undefined;
  const kernel = name.slice(HEADERS.length);
  return /^\d/.test(kernel) && flavourOf(kernel) ? kernel : undefined;
}

/** bookworm: `linux-compiler-gcc-12-x86`; trixie: `gcc-14`; sid: `gcc-16-for-host`. */
function compilerOf(name: string): string | undefined {
  return /^linux-compiler-(gcc-\d+)-/.exec(name)?.[1] ?? /^(gcc-\d+)(-for-host)?$/.exec(name)?.[1];
}
