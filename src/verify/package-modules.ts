import { basename, join } from 'node:path';
import { kernelModuleProblem } from '../dkms/elf.js';
import { parseModinfo } from '../dkms/modinfo.js';
import { outputLimits } from '../model/limits.js';
import { readRegularFile } from '../util/read-file.js';
import { KfarmError } from '../model/errors.js';
import type { TargetResult } from '../model/result.js';
import { splitDepends, type PackageModule } from './deps.js';
import { normaliseModuleName } from './params.js';

export interface LoadedPackageModule extends PackageModule {
  elf: Buffer;
  /** Relative to the output directory. */
  artifact: string;
}

/**
 * The `.ko` artifacts of a built target with what their `.modinfo` says: the module's own `name=` (which a
 * DEST_MODULE_NAME rename does not change: kf_beta_renamed.ko is still kf_beta) and its `depends=`.
 */
export async function readPackageModules(out: string, target: TargetResult): Promise<LoadedPackageModule[]> {
  const modules: LoadedPackageModule[] = [];
  for (const artifact of target.artifacts.filter((a) => a.endsWith('.ko'))) {
    const path = join(out, artifact);
    const elf = await readRegularFile(path, outputLimits.moduleBytes);
    const problem = kernelModuleProblem(elf, target.arch);
    if (problem) throw new KfarmError('KFARM_OUTPUT_UNSAFE', `${path}: not a kernel module (${problem})`);
    let info: Map<string, string[]>;
    try {
      info = parseModinfo(elf);
    } catch (error) {
      throw new KfarmError(
        'KFARM_USAGE',
        `${path}: cannot read the built module (${(error as Error).message}); rebuild ${target.id}`,
        { cause: error },
      );
    }
    const file = basename(artifact);
    const name = normaliseModuleName(info.get('name')?.[0] ?? file.slice(0, -'.ko'.length));
    if (modules.some((m) => m.name === name))
      throw new KfarmError('KFARM_USAGE', `${path}: a second module named ${name} in ${target.id}`);
    modules.push({ name, file, depends: splitDepends(info.get('depends')), elf, artifact });
  }
  return modules;
}
