import { readFile } from 'node:fs/promises';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type Pair, type YAMLMap } from 'yaml';
import { KfarmError } from '../model/errors.js';
import { displayPath } from '../util/paths.js';
import type { KnownFailing } from '../model/known-failing.js';
import { splitPackageList } from './build-deps.js';

export type KernelSelector =
  { kind: 'latest'; count: number } | { kind: 'all' } | { kind: 'list'; kernels: { name: string; line: number }[] };

export interface MatrixRelease {
  release: string;
  kernels: KernelSelector;
  flavours: string[];
  backports: boolean;
  line: number;
  /** This release's own `build-deps` (added to the matrix's), with the line they are on. */
  buildDeps?: PackageList;
}

/** Package names from a matrix file, and where they were written (for errors about them). */
export interface PackageList {
  names: string[];
  line: number;
}

export interface Matrix {
  file: string;
  distro: 'debian';
  releases: MatrixRelease[];
  knownFailing: KnownFailing[];
  /** `build-deps` for every release. */
  buildDeps?: PackageList;
}

const FLAVOURS = ['amd64', 'cloud-amd64', 'rt-amd64'];

/**
 * Loads a matrix file. Every mistake is one line naming file:line and what was expected; unknown keys are
 * errors (a typo must not silently widen or narrow the matrix).
 */
export async function loadMatrix(path: string): Promise<Matrix> {
  const file = displayPath(path);
  const text = await readFile(path, 'utf8').catch((cause: NodeJS.ErrnoException) => {
    throw new KfarmError(
      'KFARM_CONFIG_INVALID',
      `${file}: ${cause.code === 'ENOENT' ? 'no such file' : cause.message}`,
      { cause },
    );
  });
  return parseMatrix(text, file);
}

export function parseMatrix(text: string, file: string): Matrix {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const lineOf = (node: Node | null | undefined) => (node?.range ? lineCounter.linePos(node.range[0]).line : 1);
  const fail = (node: Node | null | undefined, message: string): never => {
    throw new KfarmError('KFARM_CONFIG_INVALID', `${file}:${lineOf(node)}: ${message}`);
  };
  const firstError = doc.errors[0];
  if (firstError) {
    const line = firstError.linePos?.[0].line ?? 1;
    throw new KfarmError('KFARM_CONFIG_INVALID', `${file}:${line}: invalid YAML: ${firstError.message.split('\n')[0]}`);
  }
  const root = doc.contents as Node | null;
  if (!isMap(root)) return fail(root, 'expected a mapping with "distro" and "releases"');
  checkKeys(root, ['distro', 'releases', 'known-failing', 'build-deps'], fail);
  const distro = root.get('distro', true);
  if (!isScalar(distro) || distro.value !== 'debian')
    return fail(distro ?? root, 'distro: expected "debian" (the only distribution kfarm knows so far)');
  const releases = root.get('releases', true);
  if (!isMap(releases) || releases.items.length === 0)
    return fail(releases ?? root, 'releases: expected a mapping of release name to kernel selection');

  const out = releases.items.map((pair) => parseRelease(pair, fail, lineOf));
  const buildDeps = parsePackageList(root.get('build-deps', true), 'build-deps', fail, lineOf);
  return {
    file,
    distro: 'debian',
    releases: out,
    knownFailing: parseKnownFailing(root.get('known-failing', true), fail),
    ...(buildDeps ? { buildDeps } : {}),
  };
}

function parseRelease(
  pair: Pair<unknown, unknown>,
  fail: (node: Node | null | undefined, message: string) => never,
  lineOf: (node: Node | null | undefined) => number,
): MatrixRelease {
  const key = pair.key as Node;
  const release = isScalar(key) ? String(key.value) : fail(key, 'expected a release name');
  const raw = pair.value as Node | null;
  // `trixie:` with nothing after it means "the defaults".
  const value = isScalar(raw) && raw.value === null ? null : raw;
  const spec: MatrixRelease = {
    release,
    kernels: { kind: 'latest', count: 1 },
    flavours: ['amd64'],
    backports: false,
    line: lineOf(key),
  };
  if (value !== null && !isMap(value))
    fail(value, `${release}: expected a mapping (kernels, flavours, backports, build-deps)`);
  if (isMap(value)) {
    checkKeys(value, ['kernels', 'flavours', 'backports', 'build-deps'], fail);
    const deps = parsePackageList(value.get('build-deps', true), `${release}: build-deps`, fail, lineOf);
    if (deps) spec.buildDeps = deps;
    const kernels = value.get('kernels', true) as Node | undefined;
    if (kernels) spec.kernels = parseSelector(kernels, release, fail, lineOf);
    const flavours = value.get('flavours', true) as Node | undefined;
    if (flavours) spec.flavours = parseFlavours(flavours, release, fail);
    const backports = value.get('backports', true) as Node | undefined;
    if (backports) {
      if (!isScalar(backports) || typeof backports.value !== 'boolean')
        fail(backports, `${release}: backports: expected true or false`);
      spec.backports = (backports as { value: boolean }).value;
    }
  }
  return spec;
}

/** `build-deps: [pkgconf, libxtables-dev]` or `build-deps: "pkgconf libxtables-dev"`. */
function parsePackageList(
  node: Node | undefined,
  what: string,
  fail: (node: Node | null | undefined, message: string) => never,
  lineOf: (node: Node | null | undefined) => number,
): PackageList | undefined {
  if (node === undefined || (isScalar(node) && node.value === null)) return undefined;
  const items = isSeq(node) ? node.items : [node];
  const names = items.flatMap((item) => {
    if (!isScalar(item) || typeof item.value !== 'string' || item.value.trim() === '')
      return fail(item as Node, `${what}: expected package names, e.g. [pkgconf, libxtables-dev]`);
    return splitPackageList(item.value);
  });
  return { names, line: lineOf(node) };
}

function parseFlavours(
  node: Node,
  release: string,
  fail: (node: Node | null | undefined, message: string) => never,
): string[] {
  // One flavour may be written as a plain scalar (`flavours: amd64`): it means the list of that one.
  const list = isSeq(node) ? node.items : [node];
  return list.map((item) => {
    const name = isScalar(item) ? String(item.value) : '';
    if (!FLAVOURS.includes(name))
      fail(item as Node, `${release}: unknown flavour ${JSON.stringify(name)}: expected ${FLAVOURS.join(', ')}`);
    return name;
  });
}

function parseKnownFailing(
  node: Node | undefined,
  fail: (node: Node | null | undefined, message: string) => never,
): KnownFailing[] {
  if (node === undefined || (isScalar(node) && node.value === null)) return [];
  if (!isSeq(node)) return fail(node, 'known-failing: expected a list of {kernel, reason}');
  return node.items.map((item) => {
    const entry = item as Node;
    if (!isMap(entry)) return fail(entry, 'known-failing: expected {kernel: <glob>, reason: <text>}');
    checkKeys(entry, ['kernel', 'reason'], fail);
    const kernel = entry.get('kernel', true) as Node | undefined;
    const reason = entry.get('reason', true) as Node | undefined;
    if (!isScalar(kernel) || typeof kernel.value !== 'string' || kernel.value === '') {
      return fail(
        kernel ?? entry,
        'known-failing: kernel: expected a kernel release glob like "6.12.*" or a target id glob',
      );
    }
    if (!isScalar(reason) || typeof reason.value !== 'string' || reason.value.trim() === '') {
      return fail(reason ?? entry, 'known-failing: reason: expected why this kernel is expected to fail');
    }
    return { pattern: kernel.value, reason: reason.value.trim() };
  });
}

function parseSelector(
  node: Node,
  release: string,
  fail: (node: Node | null | undefined, message: string) => never,
  lineOf: (node: Node | null | undefined) => number,
): KernelSelector {
  if (isSeq(node)) {
    return {
      kind: 'list',
      kernels: node.items.map((item) => {
        if (!isScalar(item) || typeof item.value !== 'string' || !/^\d[\w.+~-]*$/.test(item.value)) {
          return fail(item as Node, `${release}: kernels: expected kernel release names like 6.1.0-47-amd64`);
        }
        return { name: item.value, line: lineOf(item) };
      }),
    };
  }
  const value = isScalar(node) ? String(node.value) : '';
  if (value === 'all') return { kind: 'all' };
  if (value === 'latest') return { kind: 'latest', count: 1 };
  const latest = /^latest:(\d{1,4})$/.exec(value);
  // A release has tens of kernels, never thousands: a bigger N is a typo, not a wish for all of them.
  if (latest && Number(latest[1]) > 0 && Number(latest[1]) <= 1000) return { kind: 'latest', count: Number(latest[1]) };
  return fail(
    node,
    `${release}: kernels: expected latest, latest:N (N from 1 to 1000), all or a list of kernel releases, got ${JSON.stringify(value)}`,
  );
}

function checkKeys(
  map: YAMLMap,
  allowed: string[],
  fail: (node: Node | null | undefined, message: string) => never,
): void {
  for (const pair of map.items) {
    const key = pair.key as Node;
    const name = isScalar(key) ? String(key.value) : '';
    if (!allowed.includes(name)) fail(key, `unknown key ${JSON.stringify(name)}: expected ${allowed.join(', ')}`);
  }
}
