import { execa } from 'execa';
import { KfarmError } from '../model/errors.js';

/**
 * Publishing runs Debian's own repository tools on the host (apt-ftparchive, gpg, xz, createrepo_c, rpmsign): a
 * missing one is a one-line usage error naming the package that has it, before anything is written.
 */
export async function requireTool(command: string, debianPackage: string, flag: string): Promise<void> {
  const found = await execa('sh', ['-c', `command -v ${command}`], { reject: false });
  if (found.exitCode !== 0)
    throw new KfarmError(
      'KFARM_USAGE',
      `${flag}: needs ${command} (Debian package ${debianPackage}; scripts/setup-host.sh installs it)`,
    );
}

/** Runs a repository tool; a failure is KFARM_PACKAGE_FAILED with the command and its last line of output. */
export async function runTool(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; input?: string } = {},
): Promise<string> {
  const run = await execa(command, args, {
    reject: false,
    env: { LC_ALL: 'C', TZ: 'UTC', ...options.env },
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
  });
  if (run.exitCode !== 0) {
    const last = `${run.stderr}\n${run.stdout}`.trim().split('\n').filter(Boolean).pop() ?? '';
    throw new KfarmError('KFARM_PACKAGE_FAILED', `${command} exited ${run.exitCode ?? 'on a signal'}: ${last}`);
  }
  return run.stdout;
}
