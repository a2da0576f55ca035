import { KfarmError } from '../model/errors.js';
import type { ConfRecords } from './conf-records.js';

export interface ModuleRecord {
  builtName: string;
  /** Relative to the build dir, `''` or ending in `/`. */
  builtLocation: string;
  destName: string;
  destLocation: string;
  strip: boolean;
}

/** Everything DKMS decides from a dkms.conf for one kernel, before building. */
export interface DkmsPlan {
  packageName: string;
  packageVersion: string;
  modules: ModuleRecord[];
  /** The command as selected by MAKE/MAKE_MATCH (or the default), before the leading-`make` rewrite. */
  makeCommand: string;
  /** What actually runs: `make` rewritten to `make -j<jobs> KERNELRELEASE=<kver>`. */
  buildCommand: string;
  patches: string[];
  preBuild: string;
  postBuild: string;
  buildDepends: string[];
  /** Set when BUILD_EXCLUSIVE_* rules this kernel out: the target is skipped, not failed. */
  excluded?: string;
}

export interface PlanContext {
  /** The dkms.conf path as the user knows it, for error messages. */
  file: string;
  kernelver: string;
  kernelSourceDir: string;
  buildDir: string;
  parallelJobs: number;
  /**
   * The version DKMS is given (`-v`) for a tree kept as `/usr/src/<module>-<version>` by a package: it builds that
   * version whatever PACKAGE_VERSION says, which then only has to be set (read_conf checks no more).
   */
  moduleVersion?: string;
}

/** What a kernel module file may be called (`<name>.ko`): also what kfarm accepts back from a build. */
const MODULE_NAME = /^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$/;

const moduleArrays = ['BUILT_MODULE_NAME', 'BUILT_MODULE_LOCATION', 'DEST_MODULE_NAME', 'DEST_MODULE_LOCATION'];

/** Applies DKMS's read_conf rules (checked against dkms 3.0.10) to what the sourced dkms.conf left behind. */
export function planFromConf(records: ConfRecords, context: PlanContext): DkmsPlan {
  const get = valueOf(records);
  const problems: string[] = [];

  const packageName = get('PACKAGE_NAME');
  const declaredVersion = get('PACKAGE_VERSION');
  const packageVersion = context.moduleVersion ?? declaredVersion;
  if (!packageName) problems.push("no 'PACKAGE_NAME' directive");
  if (!declaredVersion) problems.push("no 'PACKAGE_VERSION' directive");
  problems.push(
    ...identityProblems('PACKAGE_NAME', packageName),
    ...identityProblems('PACKAGE_VERSION', packageVersion),
  );

  const modules = moduleRecords(records, packageName, problems);

  const patches = records.patches.map((i) => get('PATCH', i));
  for (const patch of patches) {
    if (patch.includes('..')) problems.push(`'PATCH' entry "${patch}" contains '..'`);
  }

  if (problems.length > 0) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more: ${problems.slice(1).join('; ')})` : '';
    throw new KfarmError('KFARM_CONFIG_INVALID', `${context.file}: ${problems[0]}${more}`);
  }

  const makeCommand = selectMakeCommand(records, context);
  const plan: DkmsPlan = {
    packageName,
    packageVersion,
    modules,
    makeCommand,
    buildCommand: rewriteMake(makeCommand, context),
    patches,
    preBuild: get('PRE_BUILD'),
    postBuild: get('POST_BUILD'),
    buildDepends: get('BUILD_DEPENDS').split(/\s+/).filter(Boolean),
  };
  if (records.excluded.length > 0) plan.excluded = records.excluded.join('; ');
  return plan;
}

/**
 * PACKAGE_NAME and PACKAGE_VERSION name directories (`/usr/src/<name>-<version>`, `<dkms tree>/<name>/<version>`,
 * kfarm's `<out>/dkms/<name>/<version>/`) and appear in messages: each must be one harmless path component.
 * DKMS itself only splits `<name>/<version>` at the first `/`; kfarm also refuses what could leave a directory
 * (`..`, `/`), pass for an option (a leading `-`), or reach a terminal raw (control characters, blanks).
 */
const IDENTITY = /^[A-Za-z0-9_+~:@%=][A-Za-z0-9_.+~:@%=-]*$/;

function identityProblems(directive: string, value: string): string[] {
  if (value === '' || (IDENTITY.test(value) && value.length <= 128)) return [];
  return [
    `'${directive}' (${JSON.stringify(value)}) must be one name of letters, digits and _ . + ~ : @ % = - ` +
      '(no /, no blanks, no leading . or -, at most 128 characters)',
  ];
}

function valueOf(records: ConfRecords): (name: string, index?: number) => string {
  return (name, index = 0) => records.vars.get(name)?.get(index) ?? '';
}

/** The module records of the BUILT_MODULE_* / DEST_MODULE_* arrays; what is wrong with them goes to `problems`. */
function moduleRecords(records: ConfRecords, packageName: string, problems: string[]): ModuleRecord[] {
  const get = valueOf(records);
  const count = Math.max(0, ...moduleArrays.map((name) => highestIndex(records, name) + 1));
  const destLocations = records.vars.get('DEST_MODULE_LOCATION')?.size ?? 0;
  if (count === 0 || destLocations === 0) problems.push("no 'DEST_MODULE_LOCATION' directive");

  const modules: ModuleRecord[] = [];
  let defaultStrip = true;
  for (let i = 0; i < count; i++) {
    const strip = stripValue(get('STRIP', i), defaultStrip);
    if (i === 0) defaultStrip = strip;
    let builtName = get('BUILT_MODULE_NAME', i);
    if (!builtName && destLocations === 1) builtName = packageName;
    const destName = get('DEST_MODULE_NAME', i) || builtName;
    let builtLocation = get('BUILT_MODULE_LOCATION', i);
    if (builtLocation && !builtLocation.endsWith('/')) builtLocation += '/';
    const destLocation = get('DEST_MODULE_LOCATION', i);

    // Without PACKAGE_NAME the default name is empty too; that is one problem, reported once.
    if (!builtName && (packageName || destLocations !== 1))
      problems.push(`no 'BUILT_MODULE_NAME' directive for record #${i}`);
    if (/\.k?o$/.test(builtName))
      problems.push(`'BUILT_MODULE_NAME[${i}]' (${JSON.stringify(builtName)}) ends in '.o' or '.ko'`);
    if (get('DEST_MODULE_NAME', i) && /\.k?o$/.test(destName))
      problems.push(`'DEST_MODULE_NAME[${i}]' (${JSON.stringify(destName)}) ends in '.o' or '.ko'`);
    if (count > 0 && !destLocation && destLocations > 0)
      problems.push(`no 'DEST_MODULE_LOCATION' directive for record #${i}`);
    if (destLocation && !/^\/(kernel|updates|extra)/.test(destLocation)) {
      problems.push(
        `'DEST_MODULE_LOCATION[${i}]' (${JSON.stringify(destLocation)}) does not begin with '/kernel', '/updates' or '/extra'`,
      );
    }
    if (/(^|\/)\.\.(\/|$)/.test(builtLocation) || builtLocation.startsWith('/')) {
      problems.push(
        `'BUILT_MODULE_LOCATION[${i}]' (${JSON.stringify(builtLocation)}) must stay inside the build directory`,
      );
    }
    if (!MODULE_NAME.test(destName || 'x') || !MODULE_NAME.test(builtName || 'x')) {
      problems.push(
        `module name in record #${i} (${JSON.stringify(destName || builtName)}) is not a kernel module name`,
      );
    }
    modules.push({ builtName, builtLocation, destName, destLocation, strip });
  }
  return modules;
}

function highestIndex(records: ConfRecords, name: string): number {
  return Math.max(-1, ...(records.vars.get(name)?.keys() ?? []));
}

function stripValue(value: string, fallback: boolean): boolean {
  if (/^[nN]/.test(value)) return false;
  if (/^[yY]/.test(value)) return true;
  return fallback;
}

function selectMakeCommand(records: ConfRecords, context: PlanContext): string {
  const make = records.vars.get('MAKE') ?? new Map<number, string>();
  const makeMatch = records.vars.get('MAKE_MATCH') ?? new Map<number, string>();
  let command = makeMatch.get(0) ? '' : (make.get(0) ?? '');
  for (const index of [...make.keys()].sort((a, b) => a - b)) {
    if (make.get(index) && records.makeMatches.has(index)) command = make.get(index) ?? command;
  }
  if (!command) command = `make -C ${context.kernelSourceDir} M=${context.buildDir}`;
  if (records.toolchain.has('clang')) command += ' CC=clang';
  if (records.toolchain.has('lld')) command += ' LD=ld.lld';
  return command;
}

/** DKMS's `${make_command/#make/make -j$parallel_jobs KERNELRELEASE=$kernelver}`: a literal prefix match. */
export function rewriteMake(command: string, context: Pick<PlanContext, 'parallelJobs' | 'kernelver'>): string {
  if (!command.startsWith('make')) return command;
  return `make -j${context.parallelJobs} KERNELRELEASE=${context.kernelver}${command.slice(4)}`;
}

/** Stable order in which every package comes after the packages its BUILD_DEPENDS names (a cycle keeps the given order). */
export function dependenciesFirst<T extends { plan: DkmsPlan }>(items: T[]): T[] {
  const ordered: T[] = [];
  const placed = new Set<T>();
  const visiting = new Set<T>();
  const place = (item: T) => {
    if (placed.has(item) || visiting.has(item)) return;
    visiting.add(item);
    for (const name of item.plan.buildDepends)
      for (const other of items) if (other.plan.packageName === name) place(other);
    visiting.delete(item);
    placed.add(item);
    ordered.push(item);
  };
  for (const item of items) place(item);
  return ordered;
}
