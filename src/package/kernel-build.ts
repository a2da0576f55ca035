import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { kernelModuleProblem } from '../dkms/elf.js';
import { parseModinfo } from '../dkms/modinfo.js';
import { KfarmError, errorText } from '../model/errors.js';
import { outputLimits } from '../model/limits.js';
import { targetVersion, type FarmReport } from '../model/report.js';
import type { TargetResult } from '../model/result.js';
import { readRegularFile } from '../util/read-file.js';
import type { KernelBuild } from './types.js';

const SAFE_KERNEL = /^[0-9][A-Za-z0-9.+~_-]*$/;
const KO_NAME = /^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*\.ko$/;

/**
 * Reads one target's kernel directory of the DKMS tree without following links: regular `.ko` files and
 * `Module.symvers` in `module/`, within kfarm's output limits (make.log is not packaged). The `.ko` set must be
 * the one report.json lists.
 */
export async function readKernelBuild(out: string, report: FarmReport, target: TargetResult): Promise<KernelBuild> {
  checkPackable(target);
  const version = targetVersion(report, target);
  const moduleDir = join(out, 'dkms', report.module, version, target.kernel, target.arch, 'module');
  const build: KernelBuild = {
    targetId: target.id,
    module: report.module,
    version,
    release: target.release,
    kernel: target.kernel,
    arch: target.arch,
    modules: [],
    licenses: [],
    descriptions: [],
    authors: [],
  };
  await readModuleDir(moduleDir, build);
  checkListed(moduleDir, target, build);
  for (const m of build.modules) addModinfo(build, m.data);
  return build;
}

function checkPackable(target: TargetResult): void {
  if (!SAFE_KERNEL.test(target.kernel) || target.arch !== 'x86_64' || !/^[a-z][a-z0-9-]*$/.test(target.release)) {
    const id = JSON.stringify(target.id);
    throw new KfarmError('KFARM_USAGE', `report.json: target ${id} has a kernel, arch or release kfarm cannot package`);
  }
}

async function readModuleDir(moduleDir: string, build: KernelBuild): Promise<void> {
  const names = await readdir(moduleDir).catch((error: unknown) => {
    const why = `${moduleDir}: ${errorText(error)} (was the build output moved?)`;
    throw new KfarmError('KFARM_USAGE', why, { cause: error });
  });
  for (const name of names.sort()) {
    const path = join(moduleDir, name);
    if (name === 'Module.symvers') build.symvers = await readRegularFile(path, outputLimits.symversBytes);
    else if (KO_NAME.test(name)) build.modules.push({ name, data: await readModule(path, build.arch) });
    else throw new KfarmError('KFARM_OUTPUT_UNSAFE', `${path}: not a file kfarm puts in the DKMS tree`);
  }
}

/** A `.ko` of the DKMS tree, refused unless it is a kernel module for the target's machine. */
async function readModule(path: string, arch: string): Promise<Buffer> {
  const data = await readRegularFile(path, outputLimits.moduleBytes);
  const problem = kernelModuleProblem(data, arch);
  if (problem) throw new KfarmError('KFARM_OUTPUT_UNSAFE', `${path}: not a kernel module (${problem})`);
  return data;
}

function checkListed(moduleDir: string, target: TargetResult, build: KernelBuild): void {
  const listed = target.artifacts
    .filter((a) => a.endsWith('.ko'))
    .map((a) => a.slice(a.lastIndexOf('/') + 1))
    .sort();
  const found = build.modules.map((m) => m.name);
  if (listed.join('\0') !== found.join('\0')) {
    const holds = found.join(', ') || 'no module';
    throw new KfarmError('KFARM_USAGE', `${moduleDir}: holds ${holds} but report.json lists ${listed.join(', ')}`);
  }
}

/** License, description and author from a module's `.modinfo`, for the packages' metadata. */
function addModinfo(build: KernelBuild, elf: Buffer): void {
  let info: Map<string, string[]>;
  try {
    info = parseModinfo(elf);
  } catch {
    return; // A module without a readable .modinfo: packaged without license and description.
  }
  const add = (list: string[], values: string[] | undefined) => {
    for (const v of values ?? []) if (!list.includes(v)) list.push(v);
  };
  add(build.licenses, info.get('license'));
  add(build.descriptions, info.get('description'));
  add(build.authors, info.get('author'));
}
