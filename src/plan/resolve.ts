import { KfarmError, isKfarmError } from '../model/errors.js';
import type { KnownFailing } from '../model/known-failing.js';
import { discoverReleaseIndex, type ReleaseIndex } from './debian-index.js';
import { debianSuites } from './debian-releases.js';
export { releaseSources, type SuiteSource } from './debian-releases.js';
import { compareDebianVersions } from '../util/debian-version.js';
import { loadMatrix, type MatrixRelease } from './matrix.js';
import { resolveBuildDeps } from './build-deps.js';
import { parseTargetId, type KernelTarget } from './targets.js';

export interface ResolveOptions {
  /** `--target` ids, in the order given. */
  ids?: string[];
  matrix?: string;
  /** Package names for every release, each list with where it came from (`--build-deps`, `foo.deb: Depends`). */
  buildDeps?: Array<{ names: string[]; where: string }>;
  /** More for one release, once its targets are known (a `debian:` source's Depends: each release its own). */
  releaseBuildDeps?: (release: string) => Promise<Array<{ names: string[]; where: string }>>;
  refresh?: boolean;
  signal?: AbortSignal;
}

/**
 * Turns `--target` ids and a matrix file into concrete kernels, each checked against the archive's indexes.
 * Unknown kernels are usage errors that say how to list valid ones; duplicates collapse to the first.
 */
export async function resolveTargets(options: ResolveOptions): Promise<KernelTarget[]> {
  return (await resolvePlan(options)).targets;
}

/** resolveTargets plus the matrix's known-failing entries. */
export async function resolvePlan(
  options: ResolveOptions,
): Promise<{ targets: KernelTarget[]; knownFailing: KnownFailing[] }> {
  const knownFailing: KnownFailing[] = [];
  const indexes = new Map<string, Promise<ReleaseIndex>>();
  const index = (release: string) => {
    let promise = indexes.get(release);
    if (!promise) {
      promise = discoverReleaseIndex(release, {
        ...(options.refresh ? { refresh: true } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      indexes.set(release, promise);
    }
    return promise;
  };
  const chosen: KernelTarget[] = [];
  const deps = new Map<string, Array<{ names: string[]; where: string }>>();
  const addDeps = (release: string, names: string[] | undefined, where: string) => {
    if (!names?.length) return;
    deps.set(release, [...(deps.get(release) ?? []), { names, where }]);
  };

  chosen.push(...(await targetsFromIds(options.ids ?? [], index)));

  if (options.matrix) {
    const matrix = await loadMatrix(options.matrix);
    knownFailing.push(...matrix.knownFailing);
    for (const spec of matrix.releases) {
      const release = await index(spec.release).catch((error: unknown) => {
        if (isKfarmError(error, 'KFARM_TARGET_UNKNOWN')) {
          throw new KfarmError('KFARM_CONFIG_INVALID', `${matrix.file}:${spec.line}: ${error.message}`, {
            cause: error,
          });
        }
        throw error;
      });
      chosen.push(...selectKernels(release, spec, matrix.file));
      addDeps(spec.release, matrix.buildDeps?.names, `${matrix.file}:${matrix.buildDeps?.line ?? 0}: build-deps`);
      addDeps(spec.release, spec.buildDeps?.names, `${matrix.file}:${spec.buildDeps?.line ?? 0}: build-deps`);
    }
  }

  const seen = new Set<string>();
  const targets = chosen.filter((t) => !seen.has(t.id) && seen.add(t.id));
  const releases = [...new Set(targets.map((t) => t.release))];
  const extra = options.releaseBuildDeps;
  const more = extra ? await Promise.all(releases.map((release) => extra(release))) : [];
  for (const [i, release] of releases.entries()) {
    for (const list of options.buildDeps ?? []) addDeps(release, list.names, list.where);
    for (const list of more[i] ?? []) addDeps(release, list.names, list.where);
  }
  return { targets: await withBuildDeps(targets, deps, options.signal), knownFailing };
}

/** The `--target` ids, each found in its release's index. */
async function targetsFromIds(
  ids: readonly string[],
  index: (release: string) => Promise<ReleaseIndex>,
): Promise<KernelTarget[]> {
  const chosen: KernelTarget[] = [];
  for (const id of ids) {
    const wanted = parseTargetId(id);
    if (wanted.distro !== 'debian') {
      throw new KfarmError(
        'KFARM_TARGET_UNKNOWN',
        `--target ${JSON.stringify(id)}: unknown distribution "${wanted.distro}" (kfarm knows debian)`,
      );
    }
    const kernels = (await index(wanted.release)).kernels;
    const found = kernels.find((k) => k.kernel === wanted.kernel);
    if (!found) {
      const suites = debianSuites(wanted.release)
        .map((s) => s.name)
        .join(', ');
      throw new KfarmError(
        'KFARM_TARGET_UNKNOWN',
        `unknown target ${id}: no linux-headers-${wanted.kernel} in ${suites}; ` +
          `run \`kfarm targets --release ${wanted.release}\` to list valid ones`,
      );
    }
    chosen.push(found);
  }
  return chosen;
}

/** Each target with its release's build dependencies, checked against the release's index (once per release). */
async function withBuildDeps(
  targets: KernelTarget[],
  deps: Map<string, Array<{ names: string[]; where: string }>>,
  signal: AbortSignal | undefined,
): Promise<KernelTarget[]> {
  const resolved = new Map(
    await Promise.all(
      [...deps].map(
        async ([release, lists]) =>
          [release, await resolveBuildDeps(release, lists, signal ? { signal } : {})] as const,
      ),
    ),
  );
  return targets.map((t) => {
    const buildDeps = resolved.get(t.release);
    return buildDeps ? { ...t, buildDeps } : t;
  });
}

/**
 * Applies one release's selector. `latest` is the kernel the flavour's metapackage installs; `latest:N` adds
 * the next older kernels of that same series (6.1 for bookworm, not the 6.12 backport line that also
 * reaches bookworm-security), newest first.
 */
export function selectKernels(index: ReleaseIndex, spec: MatrixRelease, file: string): KernelTarget[] {
  const pool = index.kernels.filter((k) => spec.flavours.includes(k.flavour) && (spec.backports || !k.backports));
  const selector = spec.kernels;
  if (selector.kind === 'all') return pool;
  if (selector.kind === 'list') {
    return selector.kernels.map(({ name, line }) => {
      const found = index.kernels.find((k) => k.kernel === name);
      if (!found) {
        throw new KfarmError(
          'KFARM_CONFIG_INVALID',
          `${file}:${line}: ${spec.release}: unknown kernel ${name}; run \`kfarm targets --release ${spec.release}\` to list valid ones`,
        );
      }
      return found;
    });
  }
  const picked: KernelTarget[] = [];
  for (const flavour of spec.flavours) {
    const candidates = pool.filter((k) => k.flavour === flavour);
    const preferred = index.defaults[flavour as keyof ReleaseIndex['defaults']];
    const series = preferred ? seriesOf(preferred) : undefined;
    const ranked = candidates
      .filter((k) => series === undefined || seriesOf(k.kernel) === series)
      .sort((a, b) => compareDebianVersions(b.headersVersion, a.headersVersion) || b.kernel.localeCompare(a.kernel));
    if (preferred) {
      const head = ranked.find((k) => k.kernel === preferred);
      if (head) {
        ranked.splice(ranked.indexOf(head), 1);
        ranked.unshift(head);
      }
    }
    if (ranked.length === 0) {
      throw new KfarmError(
        'KFARM_CONFIG_INVALID',
        `${file}:${spec.line}: ${spec.release}: no ${flavour} kernel in the archive`,
      );
    }
    picked.push(...ranked.slice(0, selector.count));
  }
  return picked;
}

function seriesOf(kernel: string): string {
  return /^(\d+\.\d+)/.exec(kernel)?.[1] ?? kernel;
}
