import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

/**
 * A throw-away RSA key and self-signed certificate, as a module signing key is made:
 * `<dir>/<name>.key`, `<name>.pem` and, when `der`, `<name>.der`.
 */
export async function makeSigningKey(
  dir: string,
  name: string,
  cn: string,
  options: { der?: boolean } = {},
): Promise<void> {
  const key = join(dir, `${name}.key`);
  const pem = join(dir, `${name}.pem`);
  await execa('openssl', [
    'req',
    '-new',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${cn}`,
    '-keyout',
    key,
    '-out',
    pem,
  ]);
  if (options.der) await execa('openssl', ['x509', '-in', pem, '-outform', 'DER', '-out', join(dir, `${name}.der`)]);
}

/** openssl's exit code for checking a detached CMS signature (DER) of `content` against the certificate `certPem`. */
export async function cmsVerifyExit(signature: Buffer, content: Buffer, certPem: string): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-sigcheck-'));
  await writeFile(join(dir, 'sig.der'), signature);
  await writeFile(join(dir, 'content'), content);
  const args = ['cms', '-verify', '-binary', '-noverify', '-inform', 'DER', '-in', join(dir, 'sig.der')];
  const check = await execa(
    'openssl',
    [...args, '-content', join(dir, 'content'), '-certfile', certPem, '-out', '/dev/null'],
    {
      reject: false,
    },
  );
  return check.exitCode ?? -1;
}
