import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export interface RealBuild {
  /** `dkms build`'s exit code. */
  code: number;
  /** Built module name → vermagic. */
  modules: Map<string, string>;
  log: string;
}

/** A DKMS module tree dkms installs first, standing in for a dependency (the package name it provides). */
export interface StandIn {
  dir: string;
  provides: string;
}

/**
 * The release's own `dkms build` of a Debian `*-dkms` package for one kernel, in a throw-away container of kfarm's
 * base image for that release, the package and the kernel's headers installed by apt (real-dkms-build.sh).
 */
export async function realDkmsBuild(
  release: string,
  kernel: string,
  pkg: string,
  standIn?: StandIn,
): Promise<RealBuild> {
  const script = await readFile(fileURLToPath(new URL('./real-dkms-build.sh', import.meta.url)), 'utf8');
  const args = [kernel, pkg, ...(standIn ? [standIn.provides] : [])];
  // The script is an argument so that stdin can carry the stand-in's tree.
  const tree = standIn ? (await execa('tar', ['-C', standIn.dir, '-c', '.'], { encoding: 'buffer' })).stdout : '';
  const run = await execa(
    'docker',
    [
      'run',
      '--rm',
      '-i',
      '--label',
      'kfarm.test=fidelity',
      `kfarm/debian:${release}`,
      'bash',
      '-c',
      script,
      'real',
      ...args,
    ],
    { input: tree, reject: false },
  );
  const status = /^build (\d+)$/m.exec(run.stdout);
  if (!status)
    throw new Error(`real dkms build of ${pkg} on ${release} did not run (exit ${run.exitCode}):\n${run.stderr}`);
  const modules = new Map<string, string>();
  for (const [, name, vermagic] of run.stdout.matchAll(/^module (\S+) (.*)$/gm))
    modules.set(name as string, vermagic as string);
  return { code: Number(status[1]), modules, log: run.stderr };
}
