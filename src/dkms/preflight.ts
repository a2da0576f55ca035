import { readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { KfarmError } from '../model/errors.js';

/**
 * Checks what can be checked of a DKMS source tree without running any of its code: the tree and its
 * dkms.conf exist, and the dkms.conf parses as bash (`bash -n` executes nothing). Runs before any image
 * is prepared, so a typo costs a second, not a bootstrap.
 */
export async function preflightSource(source: string): Promise<{ conf: string; confLabel: string }> {
  const info = await stat(source).catch(() => undefined);
  if (!info?.isDirectory())
    throw new KfarmError('KFARM_USAGE', `${source}: not a directory (expected a DKMS module source tree)`);
  const conf = join(source, 'dkms.conf');
  const confLabel = displayPath(conf);
  const text = await readFile(conf, 'utf8').catch((cause: NodeJS.ErrnoException) => {
    const why =
      cause.code === 'ENOENT' ? 'no such file: kfarm needs a DKMS source tree with a dkms.conf' : cause.message;
    throw new KfarmError('KFARM_CONFIG_INVALID', `${confLabel}: ${why}`, { cause });
  });
  const check = await execa('bash', ['-n'], { input: text.replace(/\r$/gm, ''), reject: false });
  if (check.exitCode !== 0) {
    const line = check.stderr.split('\n')[0]?.replace(/^bash: /, '') ?? 'bash syntax error';
    throw new KfarmError('KFARM_CONFIG_INVALID', `${confLabel}: ${line}`);
  }
  return { conf, confLabel };
}

export function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') ? rel : path;
}
