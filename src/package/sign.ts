import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { KfarmError } from '../model/errors.js';

/**
 * Module signing on the host, byte for byte what the kernel's `scripts/sign-file <hash> <key> <cert> <ko>` appends:
 * a detached CMS SignedData (no signed attributes, no certificates, no S/MIME capabilities, signer identified by
 * issuer and serial number) over the module bytes, a 12-byte `struct module_signature` (algo 0, hash 0, id_type 2
 * = PKEY_ID_PKCS7, signer_len 0, key_id_len 0, 3 bytes padding, big-endian u32 signature length), then the magic
 * `~Module signature appended~\n`. The CMS part comes from `openssl cms` on the host, so keys never enter a build
 * container. RSA signatures are deterministic, so signed modules stay byte-reproducible; ECDSA ones are not.
 */

export const SIGNATURE_MAGIC = Buffer.from('~Module signature appended~\n');
const INFO_BYTES = 12;

export interface SigningKey {
  keyPath: string;
  certPath: string;
  /** The certificate as PEM (public; written next to the work files for openssl). */
  certPem: string;
  /**
   * The certificate's subject CN, which `modinfo` prints as `signer` (sign-file uses issuer + serial; for a
   * self-signed cert they agree).
   */
  subject: string;
  issuer: string;
  serialNumber: string;
}

/**
 * Checks the pair before any work starts: the key file is readable and holds an unencrypted private key (PEM or
 * DER), the certificate file holds an X.509 certificate (PEM or DER), and the certificate's public key is the
 * key's. Each failure is one KFARM_USAGE line naming the flag and the file.
 */
export async function loadSigningKey(keyPath: string | undefined, certPath: string | undefined): Promise<SigningKey> {
  if (!keyPath || !certPath) {
    throw new KfarmError(
      'KFARM_USAGE',
      keyPath
        ? '--sign-key needs --sign-cert (the certificate of that key)'
        : '--sign-cert needs --sign-key (the private key of that certificate)',
    );
  }
  const keyBytes = await readOrFail('--sign-key', keyPath);
  const certBytes = await readOrFail('--sign-cert', certPath);
  let key: KeyObject;
  try {
    key = parseKey(keyBytes);
  } catch (error) {
    const encrypted =
      keyBytes.includes('ENCRYPTED PRIVATE KEY') ||
      /Proc-Type: 4,ENCRYPTED/.test(keyBytes.toString('latin1')) ||
      /passphrase/i.test((error as Error).message);
    const why = encrypted
      ? 'the private key is encrypted (give an unencrypted PEM or DER key)'
      : 'not a private key (expected PEM or DER)';
    throw new KfarmError('KFARM_USAGE', `--sign-key ${keyPath}: ${why}`, { cause: error });
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certBytes);
  } catch (error) {
    throw new KfarmError('KFARM_USAGE', `--sign-cert ${certPath}: not an X.509 certificate (expected PEM or DER)`, {
      cause: error,
    });
  }
  if (!cert.checkPrivateKey(key)) {
    throw new KfarmError(
      'KFARM_USAGE',
      `--sign-cert ${certPath}: its public key does not match the private key in --sign-key ${keyPath}`,
    );
  }
  return {
    keyPath,
    certPath,
    certPem: cert.toString(),
    subject: /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1] ?? cert.subject,
    issuer: /(?:^|\n)CN=([^\n]*)/.exec(cert.issuer)?.[1] ?? cert.issuer,
    serialNumber: cert.serialNumber,
  };
}

async function readOrFail(flag: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (error as Error).message;
    throw new KfarmError('KFARM_USAGE', `${flag} ${path}: cannot read it (${why})`, { cause: error });
  }
}

function parseKey(bytes: Buffer): KeyObject {
  if (bytes.includes('-----BEGIN')) return createPrivateKey({ key: bytes, format: 'pem' });
  try {
    return createPrivateKey({ key: bytes, format: 'der', type: 'pkcs8' });
  } catch {
    return createPrivateKey({ key: bytes, format: 'der', type: 'pkcs1' });
  }
}

export function isSigned(ko: Buffer): boolean {
  return ko.length > SIGNATURE_MAGIC.length && ko.subarray(ko.length - SIGNATURE_MAGIC.length).equals(SIGNATURE_MAGIC);
}

/**
 * Appends a signature to a copy of `ko`. `hash` is the target kernel's CONFIG_MODULE_SIG_HASH (sha256, sha512…);
 * `workDir` is a private directory for openssl's input files.
 */
export async function signModule(
  ko: Buffer,
  hash: string,
  key: SigningKey,
  workDir: string,
  signal?: AbortSignal,
): Promise<Buffer> {
  if (!/^[a-z0-9-]+$/.test(hash))
    throw new KfarmError('KFARM_INTERNAL', `unexpected CONFIG_MODULE_SIG_HASH ${JSON.stringify(hash)}`);
  if (isSigned(ko))
    throw new KfarmError(
      'KFARM_USAGE',
      'the module is already signed (it ends with a module signature); sign unsigned modules only',
    );
  const input = join(workDir, 'module.ko');
  const cert = join(workDir, 'signer.pem');
  await writeFile(input, ko, { mode: 0o600 });
  await writeFile(cert, key.certPem, { mode: 0o600 });
  const result = await execa(
    'openssl',
    [
      'cms',
      '-sign',
      '-binary',
      '-noattr',
      '-nosmimecap',
      '-nocerts',
      '-outform',
      'DER',
      '-md',
      hash,
      '-signer',
      cert,
      '-inkey',
      key.keyPath,
      '-in',
      input,
    ],
    { encoding: 'buffer', reject: false, stdin: 'ignore', ...(signal ? { cancelSignal: signal } : {}) },
  ).catch((error: unknown) => {
    throw new KfarmError('KFARM_USAGE', `signing needs openssl on the host: ${(error as Error).message}`, {
      cause: error,
    });
  });
  if (result.exitCode !== 0 || result.stdout.length === 0) {
    const why = Buffer.from(result.stderr).toString('utf8').trim().split('\n')[0] ?? '';
    throw new KfarmError(
      'KFARM_USAGE',
      `openssl cms -sign with --sign-key ${key.keyPath} failed (exit ${result.exitCode})${why ? `: ${why}` : ''}`,
    );
  }
  const signature = Buffer.from(result.stdout);
  const info = Buffer.alloc(INFO_BYTES);
  info[2] = 2; // id_type PKEY_ID_PKCS7
  info.writeUInt32BE(signature.length, 8);
  return Buffer.concat([ko, signature, info, SIGNATURE_MAGIC]);
}

export interface ModuleSignature {
  /** The module bytes the signature covers. */
  module: Buffer;
  /** DER CMS SignedData. */
  signature: Buffer;
  algo: number;
  hash: number;
  idType: number;
  signerLength: number;
  keyIdLength: number;
}

/** Splits a signed module into the bytes that were signed and the signature; undefined when it is not signed. */
export function parseModuleSignature(ko: Buffer): ModuleSignature | undefined {
  if (!isSigned(ko) || ko.length < SIGNATURE_MAGIC.length + INFO_BYTES) return undefined;
  const infoAt = ko.length - SIGNATURE_MAGIC.length - INFO_BYTES;
  const info = ko.subarray(infoAt, infoAt + INFO_BYTES);
  const sigLength = info.readUInt32BE(8);
  if (sigLength > infoAt) return undefined;
  return {
    module: ko.subarray(0, infoAt - sigLength),
    signature: ko.subarray(infoAt - sigLength, infoAt),
    algo: info[0] ?? 0,
    hash: info[1] ?? 0,
    idType: info[2] ?? 0,
    signerLength: info[3] ?? 0,
    keyIdLength: info[4] ?? 0,
  };
}
