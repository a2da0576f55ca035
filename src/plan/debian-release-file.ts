import { access } from 'node:fs/promises';
import { execa } from 'execa';
import { KfarmError, errorText } from '../model/errors.js';
import { fetchText } from './debian-http.js';

const ARCHIVE_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

export interface ReleaseEntry {
  sha256: string;
  size: number;
}

/**
 * Fetches `<suite url>/InRelease` and returns the Release text it carries. When the host has `gpgv` and Debian's
 * archive keyring, the signature is checked and only the signed text is returned. Hosts without them (macOS,
 * minimal containers) skip the check rather than refuse to work: the index is then as trustworthy as the HTTP
 * connection, which is also what a plain `apt` mirror list over http gives. Tests against recorded unsigned files
 * pass `verifySignature: false`.
 */
export async function fetchRelease(
  url: string,
  options: { verifySignature?: boolean; signal?: AbortSignal } = {},
): Promise<string> {
  const text = await fetchText(url, options.signal);
  if (options.verifySignature !== false && (await canVerify())) {
    try {
      const { stdout } = await execa('gpgv', ['--keyring', ARCHIVE_KEYRING, '--output', '-', '-'], {
        input: text,
        ...(options.signal ? { cancelSignal: options.signal } : {}),
      });
      return stdout;
    } catch (error) {
      throw new KfarmError('KFARM_INDEX_UNAVAILABLE', `bad signature on ${url}: ${gpgvReason(error)}`, {
        cause: error,
      });
    }
  }
  return stripClearsign(text);
}

/** The `SHA256:` line of a Release file for `path` (e.g. `main/binary-amd64/Packages.xz`). */
export function releaseEntry(release: string, path: string): ReleaseEntry | undefined {
  let inSha256 = false;
  for (const line of release.split('\n')) {
    if (!line.startsWith(' ')) {
      inSha256 = line.trimEnd() === 'SHA256:';
      continue;
    }
    if (!inSha256) continue;
    const [sha256, size, name] = line.trim().split(/\s+/);
    if (name === path && sha256 && size && /^\d+$/.test(size))
      return { sha256: sha256.toLowerCase(), size: Number(size) };
  }
  return undefined;
}

let verifierPresent: Promise<boolean> | undefined;

function canVerify(): Promise<boolean> {
  verifierPresent ??= (async () => {
    try {
      await access(ARCHIVE_KEYRING);
      await execa('gpgv', ['--version']);
      return true;
    } catch {
      return false;
    }
  })();
  return verifierPresent;
}

/** gpgv's own words ("BAD signature", "no signature found"), not its progress chatter. */
function gpgvReason(error: unknown): string {
  const stderr = (error as { stderr?: unknown }).stderr;
  if (typeof stderr !== 'string' || stderr === '') return errorText(error);
  const lines = stderr.split('\n').filter((l) => !/Signature made|using \w+ key/.test(l));
  return lines
    .slice(0, 2)
    .join('; ')
    .replace(/gpgv: /g, '');
}

/** The text inside a clearsigned message, or the text itself when it is not signed. */
function stripClearsign(text: string): string {
  const lines = text.split('\n');
  if (lines[0]?.trim() !== '-----BEGIN PGP SIGNED MESSAGE-----') return text;
  const start = lines.indexOf('') + 1;
  const end = lines.findIndex((l) => l.trim() === '-----BEGIN PGP SIGNATURE-----');
  return lines
    .slice(start, end < 0 ? undefined : end)
    .map((l) => (l.startsWith('- ') ? l.slice(2) : l))
    .join('\n');
}
