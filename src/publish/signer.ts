import { rmSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { KfarmError, errorText } from '../model/errors.js';
import { requireTool } from './tools.js';

/**
 * OpenPGP signing with the host's gpg, for repository indexes (InRelease, Release.gpg, repomd.xml.asc) and rpm
 * headers. The key never enters a container.
 *
 * `--gpg-key` names either a file holding an exported secret key, imported into a private GnuPG home (mode 0700,
 * removed when done) that only this process uses, or a key ID, fingerprint or user ID in the user's own keyring,
 * signed with through their gpg-agent (which may ask for its passphrase).
 *
 * Signatures are dated `max(SOURCE_DATE_EPOCH, the key's creation)` with gpg's `--faked-system-time`, so the same
 * inputs give the same bytes (RSA and EdDSA signatures are deterministic); gpg refuses a time before the key.
 */
export class Signer {
  private constructor(
    /** The GnuPG home: the private one made for a key file, else the user's (undefined: gpg's default). */
    readonly home: string | undefined,
    readonly fingerprint: string,
    readonly created: number,
    readonly userId: string,
    private readonly ownHome: boolean,
  ) {}

  static async open(spec: string, env: NodeJS.ProcessEnv = process.env): Promise<Signer> {
    await requireTool('gpg', 'gnupg', '--gpg-key');
    const isFile = (await stat(spec).catch(() => undefined))?.isFile() ?? false;
    if (!isFile) {
      const key = await secretKey(env['GNUPGHOME'], spec, spec);
      return new Signer(env['GNUPGHOME'], key.fingerprint, key.created, key.userId, false);
    }
    const home = await mkdtemp(join(tmpdir(), 'kfarm-gnupg-'));
    try {
      onHardExit.add(home);
      const imported = await gpg(home, ['--import', '--', spec]);
      if (imported.exitCode !== 0)
        throw new KfarmError('KFARM_USAGE', `--gpg-key ${spec}: not an OpenPGP key (${lastLine(imported.stderr)})`);
      const key = await secretKey(home, spec, undefined);
      return new Signer(home, key.fingerprint, key.created, key.userId, true);
    } catch (error) {
      await removeHome(home);
      throw error;
    }
  }

  /** The time signatures carry: SOURCE_DATE_EPOCH, moved up to the key's creation when older. */
  signingTime(epoch: number): number {
    return Math.max(epoch, this.created);
  }

  /** `InRelease`: the file clear-signed. */
  clearsign(file: string, out: string, epoch: number): Promise<void> {
    return this.#sign(['--clearsign', '--output', out, file], epoch);
  }

  /** A detached ASCII-armoured signature (`Release.gpg`, `repomd.xml.asc`). */
  detachSign(file: string, out: string, epoch: number): Promise<void> {
    return this.#sign(['--detach-sign', '--armor', '--output', out, file], epoch);
  }

  /** The public key, ASCII-armoured, for users to fetch. */
  async publicKey(): Promise<string> {
    const run = await gpg(this.home, ['--armor', '--export', this.fingerprint]);
    if (run.exitCode !== 0 || !run.stdout.includes('BEGIN PGP PUBLIC KEY BLOCK'))
      throw new KfarmError('KFARM_USAGE', `--gpg-key: cannot export the public key (${lastLine(run.stderr)})`);
    return `${run.stdout.trim()}\n`;
  }

  /** Options of gpg for another program that signs through it (rpmsign). */
  gpgArgs(epoch: number): string[] {
    return ['--faked-system-time', `${this.signingTime(epoch)}!`, '--digest-algo', 'SHA512'];
  }

  async close(): Promise<void> {
    if (this.ownHome && this.home) await removeHome(this.home);
  }

  async #sign(args: string[], epoch: number): Promise<void> {
    const run = await gpg(this.home, [
      '--yes',
      '--local-user',
      `${this.fingerprint}!`,
      ...this.gpgArgs(epoch),
      ...args,
    ]);
    if (run.exitCode !== 0) {
      const why = /passphrase|pinentry|Inappropriate ioctl/i.test(run.stderr)
        ? 'the key needs a passphrase: give an unprotected key file, or the key ID to sign through your gpg-agent'
        : lastLine(run.stderr);
      throw new KfarmError('KFARM_USAGE', `--gpg-key: signing failed: ${why}`);
    }
  }
}

/**
 * A private GnuPG home holds the imported secret key: it goes when publishing ends, with the gpg-agent gpg started
 * for it (which would keep the key in memory), and also when the process is made to exit at once (a second
 * Ctrl-C), so no copy of the key outlives the run.
 */
const onHardExit = new Set<string>();
process.on('exit', () => {
  for (const home of onHardExit) rmSync(home, { recursive: true, force: true });
});

async function removeHome(home: string): Promise<void> {
  await execa('gpgconf', ['--homedir', home, '--kill', 'gpg-agent'], { reject: false, stdin: 'ignore' }).catch(
    () => undefined,
  );
  await rm(home, { recursive: true, force: true });
  onHardExit.delete(home);
}

interface SecretKey {
  fingerprint: string;
  created: number;
  userId: string;
}

/** The one signing-capable secret key in `home` (matching `query` when given). */
async function secretKey(home: string | undefined, spec: string, query: string | undefined): Promise<SecretKey> {
  const run = await gpg(home, ['--with-colons', '--list-secret-keys', ...(query === undefined ? [] : ['--', query])]);
  const keys = parseSecretKeys(run.exitCode === 0 ? run.stdout : '');
  const usable = keys.filter((k) => k.canSign);
  if (usable.length === 0) {
    const what = query === undefined ? 'holds no secret key that can sign' : 'is neither a key file nor a secret key';
    throw new KfarmError('KFARM_USAGE', `--gpg-key ${spec}: ${what} in the GnuPG keyring`);
  }
  if (usable.length > 1)
    throw new KfarmError(
      'KFARM_USAGE',
      `--gpg-key ${spec}: ${usable.length} secret keys match (${usable.map((k) => k.fingerprint).join(', ')}); give one fingerprint`,
    );
  return usable[0] as SecretKey;
}

/** `gpg --with-colons --list-secret-keys` → primary keys: fingerprint, creation time, first user ID, can sign. */
export function parseSecretKeys(colons: string): (SecretKey & { canSign: boolean })[] {
  const keys: (SecretKey & { canSign: boolean })[] = [];
  for (const line of colons.split('\n')) {
    const f = line.split(':');
    const current = keys[keys.length - 1];
    if (f[0] === 'sec')
      keys.push({ fingerprint: '', created: Number(f[5]), userId: '', canSign: /S/.test(f[11] ?? '') });
    else if (f[0] === 'fpr' && current && current.fingerprint === '') current.fingerprint = f[9] ?? '';
    else if (f[0] === 'uid' && current && current.userId === '') current.userId = unescapeColons(f[9] ?? '');
  }
  return keys.filter((k) => k.fingerprint !== '' && Number.isSafeInteger(k.created));
}

function unescapeColons(text: string): string {
  return text.replace(/\\x([0-9a-fA-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

function gpg(home: string | undefined, args: string[]) {
  return execa('gpg', ['--batch', '--no-tty', '--quiet', ...(home ? ['--homedir', home] : []), ...args], {
    reject: false,
    env: { LC_ALL: 'C', TZ: 'UTC' },
    stdin: 'ignore',
  }).catch((error: unknown) => {
    throw new KfarmError('KFARM_USAGE', `--gpg-key: gpg did not run: ${errorText(error)}`, { cause: error });
  });
}

function lastLine(text: string): string {
  return (
    text
      .trim()
      .split('\n')
      .filter((l) => l.trim())
      .pop() ?? 'no message'
  );
}
