import { chmod, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { isKfarmError } from '../../src/model/errors.js';
import { cmsVerifyExit, makeSigningKey } from '../helpers/signing.js';
import { loadSigningKey, parseModuleSignature, signModule, SIGNATURE_MAGIC } from '../../src/package/sign.js';

let dir: string;
const path = (name: string) => join(dir, name);

const makeKey = (name: string, cn: string) => makeSigningKey(dir, name, cn, { der: true });

async function usageError(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isKfarmError(error, 'KFARM_USAGE'), String(error)).toBe(true);
  expect((error as { exitCode: number }).exitCode).toBe(2);
  expect((error as Error).message).not.toContain('\n');
  return (error as Error).message;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kfarm-sign-test-'));
  await makeKey('a', 'kfarm signer A');
  await makeKey('b', 'kfarm signer B');
  await writeFile(path('garbage'), 'not a key at all\n');
  await execa('openssl', [
    'genpkey',
    '-algorithm',
    'RSA',
    '-pkeyopt',
    'rsa_keygen_bits:2048',
    '-aes256',
    '-pass',
    'pass:secret',
    '-out',
    path('encrypted.key'),
  ]);
});

describe('signing keys are checked before any work', () => {
  it('accepts a matching pair, PEM or DER certificate', async () => {
    const key = await loadSigningKey(path('a.key'), path('a.der'));
    expect(key.subject).toBe('kfarm signer A');
    expect(key.certPem).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect((await loadSigningKey(path('a.key'), path('a.pem'))).serialNumber).toBe(key.serialNumber);
  });

  it('a key and a certificate that do not belong together', async () => {
    expect(await usageError(loadSigningKey(path('a.key'), path('b.pem')))).toBe(
      `--sign-cert ${path('b.pem')}: its public key does not match the private key in --sign-key ${path('a.key')}`,
    );
  });

  it('an unreadable or missing key, a file that is not a key, an encrypted key, a certificate that is not one', async () => {
    expect(await usageError(loadSigningKey(path('missing.key'), path('a.pem')))).toBe(
      `--sign-key ${path('missing.key')}: cannot read it (no such file)`,
    );
    expect(await usageError(loadSigningKey(dir, path('a.pem')))).toBe(
      `--sign-key ${dir}: cannot read it (is a directory)`,
    );
    expect(await usageError(loadSigningKey(path('garbage'), path('a.pem')))).toBe(
      `--sign-key ${path('garbage')}: not a private key (expected PEM or DER)`,
    );
    expect(await usageError(loadSigningKey(path('a.pem'), path('a.pem')))).toMatch(
      /^--sign-key .*a\.pem: not a private key/,
    );
    expect(await usageError(loadSigningKey(path('encrypted.key'), path('a.pem')))).toMatch(
      /^--sign-key .*encrypted\.key: the private key is encrypted/,
    );
    expect(await usageError(loadSigningKey(path('a.key'), path('a.key')))).toBe(
      `--sign-cert ${path('a.key')}: not an X.509 certificate (expected PEM or DER)`,
    );
    expect(await usageError(loadSigningKey(path('a.key'), undefined))).toMatch(/--sign-key needs --sign-cert/);
    expect(await usageError(loadSigningKey(undefined, path('a.pem')))).toMatch(/--sign-cert needs --sign-key/);
    if (process.getuid?.() !== 0) {
      await writeFile(path('private.key'), 'x');
      await chmod(path('private.key'), 0);
      expect(await usageError(loadSigningKey(path('private.key'), path('a.pem')))).toMatch(/permission denied/);
    }
  });
});

describe('module signatures', () => {
  const module = Buffer.concat([Buffer.from('\x7fELF'), Buffer.alloc(5000, 0x5a)]);

  it('appends CMS + module_signature + magic; the CMS verifies against the certificate with openssl', async () => {
    const key = await loadSigningKey(path('a.key'), path('a.pem'));
    const signed = await signModule(module, 'sha256', key, dir);
    expect(signed.subarray(signed.length - SIGNATURE_MAGIC.length).toString()).toBe('~Module signature appended~\n');
    const sig = parseModuleSignature(signed);
    expect(sig).toBeDefined();
    if (!sig) return;
    expect(sig.module.equals(module)).toBe(true);
    expect({
      algo: sig.algo,
      hash: sig.hash,
      idType: sig.idType,
      signerLength: sig.signerLength,
      keyIdLength: sig.keyIdLength,
    }).toEqual({ algo: 0, hash: 0, idType: 2, signerLength: 0, keyIdLength: 0 });
    expect(signed.length).toBe(module.length + sig.signature.length + 12 + 28);
    await writeFile(path('sig.der'), sig.signature);
    await writeFile(path('content.bin'), sig.module);
    expect(await cmsVerifyExit(sig.signature, sig.module, path('a.pem'))).toBe(0);
    // Detached, no certificates, no signed attributes: what sign-file makes.
    const printed = await execa('openssl', ['cms', '-cmsout', '-print', '-inform', 'DER', '-in', path('sig.der')]);
    expect(printed.stdout).toMatch(/eContent: <ABSENT>/);
    expect(printed.stdout).toMatch(/certificates:\s*<ABSENT>/);
    expect(printed.stdout).toMatch(/signedAttrs:\s*<ABSENT>/);
    expect(printed.stdout).toMatch(/algorithm: sha256/);
    // Against the wrong certificate it does not verify.
    expect(await cmsVerifyExit(sig.signature, sig.module, path('b.pem'))).not.toBe(0);
    // RSA PKCS#1 v1.5 is deterministic: the same module signs to the same bytes.
    expect((await signModule(module, 'sha256', key, dir)).equals(signed)).toBe(true);
    expect((await signModule(module, 'sha512', key, dir)).equals(signed)).toBe(false);
  });

  it('refuses to sign twice and unknown hash names', async () => {
    const key = await loadSigningKey(path('a.key'), path('a.pem'));
    const signed = await signModule(module, 'sha256', key, dir);
    await expect(signModule(signed, 'sha256', key, dir)).rejects.toThrow(/already signed/);
    await expect(signModule(module, 'sha256; rm -rf /', key, dir)).rejects.toThrow(/unexpected CONFIG_MODULE_SIG_HASH/);
    expect(parseModuleSignature(module)).toBeUndefined();
  });
});
