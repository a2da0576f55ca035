import { KfarmError } from '../model/errors.js';
import { normaliseModuleName } from './params.js';

/** A module of the package under test, as its `.modinfo` describes it. */
export interface PackageModule {
  /** modinfo `name=` (what /proc/modules and rmmod use), e.g. `kf_beta` for `kf_beta_renamed.ko`. */
  name: string;
  /** Its file name in the DKMS tree, e.g. `kf_beta_renamed.ko`. */
  file: string;
  /** modinfo `depends=`. */
  depends: string[];
}

export interface LoadStep {
  name: string;
  /** `package`: one of the modules under test; `kernel`: a module of the target kernel they need. */
  source: 'package' | 'kernel';
}

export interface LoadPlan {
  /** Every module to insmod, each after everything it depends on. */
  order: LoadStep[];
  /** Dependencies found neither in the package nor in the kernel: `[needed by, missing name]`. */
  missing: Array<[string, string]>;
}

/**
 * Orders the package's modules and the kernel modules they need (recursively, through `depends=`) so that
 * every module comes after its dependencies — what modprobe does with modules.dep, which Debian's image
 * packages do not ship. A package module shadows a kernel module of the same name, as DKMS's `/updates`
 * does. Otherwise the package's own order is kept. A cycle is an error (the kernel could not load it either).
 */
export function loadOrder(
  packageModules: readonly PackageModule[],
  kernelDepends: (name: string) => readonly string[] | undefined,
): LoadPlan {
  const own = new Map(packageModules.map((m) => [normaliseModuleName(m.name), m]));
  const order: LoadStep[] = [];
  const missing: Array<[string, string]> = [];
  const done = new Set<string>();
  const visiting: string[] = [];

  const visit = (name: string, neededBy: string | undefined): void => {
    if (done.has(name)) return;
    if (visiting.includes(name))
      throw new KfarmError(
        'KFARM_MALFORMED',
        `module dependency cycle: ${[...visiting.slice(visiting.indexOf(name)), name].join(' -> ')}`,
      );
    const mine = own.get(name);
    const depends = mine ? mine.depends : kernelDepends(name);
    if (depends === undefined) {
      if (neededBy !== undefined && !missing.some(([by, dep]) => by === neededBy && dep === name))
        missing.push([neededBy, name]);
      return;
    }
    visiting.push(name);
    for (const dep of depends) if (dep.trim() !== '') visit(normaliseModuleName(dep.trim()), name);
    visiting.pop();
    done.add(name);
    order.push({ name, source: mine ? 'package' : 'kernel' });
  };

  for (const module of packageModules) visit(normaliseModuleName(module.name), undefined);
  return { order, missing };
}

/** modinfo `depends=` is one comma-separated value (possibly empty). */
export function splitDepends(values: readonly string[] | undefined): string[] {
  return (values ?? [])
    .flatMap((v) => v.split(','))
    .map((d) => d.trim())
    .filter((d) => d !== '');
}
