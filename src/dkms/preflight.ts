import { constants } from 'node:fs';
import { mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { KfarmError } from '../model/errors.js';
import { displayPath } from '../util/paths.js';

/** A dkms.conf is a short script; one larger than this is not a dkms.conf worth evaluating. */
const MAX_CONF_BYTES = 16 * 1024 * 1024;
/** `bash -n` of any real dkms.conf takes milliseconds. */
const SYNTAX_CHECK_MS = 30_000;

/**
 * Checks what can be checked of a DKMS source tree without running any of its code: the tree is a readable
 * directory holding only what DKMS copies (regular files, directories, symlinks: a FIFO or socket would block
 * the copy), its dkms.conf is a regular file, and it parses as bash (`bash -n` executes nothing). Runs before
 * any image is prepared, so a typo costs a second, not a bootstrap. Every failure is one line, exit 2.
 */
export async function preflightSource(source: string): Promise<{ conf: string; confLabel: string }> {
  await checkSourceDir(source);
  const conf = join(source, 'dkms.conf');
  const confLabel = displayPath(conf);
  const text = await readConf(conf, confLabel);
  await findSpecialFile(source);
  await checkSyntax(text, confLabel);
  return { conf, confLabel };
}

/** A `--dkms-conf-override` file: readable, a regular file, parsed by `bash -n`; its text travels to the builders. */
export async function readConfOverride(path: string): Promise<{ label: string; text: string }> {
  const label = displayPath(path);
  const text = await readConf(path, label, 'no such file');
  await checkSyntax(text, label);
  return { label, text };
}

async function checkSourceDir(source: string): Promise<void> {
  const label = displayPath(source);
  const info = await stat(source).catch((error: NodeJS.ErrnoException) => {
    const why =
      error.code === 'ENOENT' ? 'no such directory' : error.code === 'EACCES' ? 'permission denied' : error.message;
    throw new KfarmError('KFARM_USAGE', `${label}: ${why} (expected a DKMS module source tree)`, { cause: error });
  });
  if (!info.isDirectory())
    throw new KfarmError('KFARM_USAGE', `${label}: not a directory (expected a DKMS module source tree)`);
}

/**
 * Opened without blocking and checked to be a regular file before a byte is read: a FIFO named dkms.conf
 * would otherwise hang kfarm in open(2), deaf to Ctrl-C.
 */
async function readConf(
  conf: string,
  confLabel: string,
  missing = 'no such file: kfarm needs a DKMS source tree with a dkms.conf',
): Promise<string> {
  let handle;
  try {
    handle = await open(conf, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? missing : (error as Error).message;
    throw new KfarmError('KFARM_CONFIG_INVALID', `${confLabel}: ${why}`, { cause: error });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new KfarmError('KFARM_CONFIG_INVALID', `${confLabel}: not a regular file`);
    if (info.size > MAX_CONF_BYTES)
      throw new KfarmError('KFARM_CONFIG_INVALID', `${confLabel}: ${info.size} bytes, more than a dkms.conf can be`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/** DKMS copies regular files, directories and symlinks only; anything else in the tree is named, exit 2. */
async function findSpecialFile(root: string): Promise<void> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch((error: unknown) => {
    throw new KfarmError(
      'KFARM_USAGE',
      `${displayPath(root)}: cannot read the source tree (${(error as Error).message})`,
      { cause: error },
    );
  });
  const special = entries.find((e) => !e.isFile() && !e.isDirectory() && !e.isSymbolicLink());
  if (!special) return;
  const path = join(special.parentPath, special.name);
  const kind = special.isFIFO() ? 'a FIFO' : special.isSocket() ? 'a socket' : 'a device file';
  const label = join(displayPath(root), relative(root, path));
  throw new KfarmError(
    'KFARM_USAGE',
    `${label}: ${kind} in the module source tree (DKMS copies regular files, directories and symlinks only)`,
  );
}

/** `bash -n` of a temporary copy with CRs stripped (DKMS strips them): read as a file, not a byte at a time from a pipe. */
async function checkSyntax(text: string, confLabel: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-conf-'));
  try {
    const file = join(dir, 'dkms.conf');
    await writeFile(file, text.replace(/\r$/gm, ''));
    const check = await execa('bash', ['-n', file], { reject: false, timeout: SYNTAX_CHECK_MS, stdin: 'ignore' });
    if (check.timedOut)
      throw new KfarmError(
        'KFARM_CONFIG_INVALID',
        `${confLabel}: bash -n did not finish within ${SYNTAX_CHECK_MS / 1000} s`,
      );
    if (check.exitCode !== 0) {
      const line =
        check.stderr
          .split('\n')[0]
          ?.replace(`${file}: `, '')
          .replace(/^bash: /, '') ?? 'bash syntax error';
      throw new KfarmError('KFARM_CONFIG_INVALID', `${confLabel}: ${line}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
