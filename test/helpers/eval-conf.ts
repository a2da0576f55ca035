import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseConfRecords } from '../../src/dkms/conf-records.js';
import { planFromConf, type DkmsPlan } from '../../src/dkms/plan.js';
import { imagesDir } from '../../src/images/recipe.js';

export interface EvalInput {
  conf: string;
  kernelver?: string;
  arch?: string;
  /** Files of the module source tree besides dkms.conf. */
  files?: Record<string, string>;
  /** The fake kernel's .config (and include/config/auto.conf). */
  kconfig?: string;
  module?: string;
  moduleVersion?: string;
}

/**
 * Runs images/runtime/eval-conf.sh — the script kfarm runs in build containers — with real bash against a
 * dkms.conf written to a temp dir, then applies the same interpretation the build does.
 */
export async function evaluateConf(input: EvalInput): Promise<DkmsPlan> {
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-conf-'));
  const src = join(dir, 'src');
  const kernelver = input.kernelver ?? '6.1.0-47-amd64';
  const ksrc = join(dir, 'lib/modules', kernelver, 'build');
  await mkdir(join(ksrc, 'include/config'), { recursive: true });
  await mkdir(src, { recursive: true });
  if (input.kconfig !== undefined) {
    await writeFile(join(ksrc, '.config'), input.kconfig);
    await writeFile(join(ksrc, 'include/config/auto.conf'), input.kconfig);
  }
  await writeFile(join(src, 'dkms.conf'), input.conf);
  for (const [name, text] of Object.entries(input.files ?? {})) await writeFile(join(src, name), text);
  const env = {
    kernelver,
    arch: input.arch ?? 'x86_64',
    kernel_source_dir: ksrc,
    dkms_tree: '/var/lib/dkms',
    source_tree: '/usr/src',
    install_tree: '/lib/modules',
    parallel_jobs: '4',
    // Without them the script learns them from a first reading, as kfarm's builds do.
    ...(input.module === undefined ? {} : { module: input.module, module_version: input.moduleVersion ?? '' }),
  };
  const run = await execa('bash', [join(imagesDir, 'runtime/eval-conf.sh'), 'dkms.conf'], {
    cwd: src,
    env,
    extendEnv: false,
    encoding: 'buffer',
    reject: false,
  });
  if (run.exitCode !== 0) {
    throw new Error(`eval-conf exited ${run.exitCode}: ${Buffer.from(run.stderr).toString().trim()}`);
  }
  const records = parseConfRecords(Buffer.from(run.stdout));
  const name = records.vars.get('PACKAGE_NAME')?.get(0) ?? '';
  const version = records.vars.get('PACKAGE_VERSION')?.get(0) ?? '';
  return planFromConf(records, {
    file: 'dkms.conf',
    kernelver,
    kernelSourceDir: `/lib/modules/${kernelver}/build`,
    buildDir: `/var/lib/dkms/${name}/${version}/build`,
    parallelJobs: 4,
  });
}
