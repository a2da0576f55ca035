import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { KfarmError } from '../model/errors.js';
import { parseSourceDateEpoch } from '../util/source-date-epoch.js';
import { loadSigningKey, type SigningKey } from './sign.js';
import { packageFormats, type PackageFormat, type PackageOptions } from './types.js';

/**
 * Every check `packageOutput` makes before it touches anything, without side effects: formats, the key/cert
 * pair (readable, a private key, a certificate of that key), the `--with-source` tree, `--maintainer`, and a
 * `SOURCE_DATE_EPOCH` in the environment. `kfarm build --package` calls it before the first build starts, so a bad
 * key fails in a second rather than after the builds.
 */
export async function checkPackageOptions(
  options: PackageOptions,
): Promise<{ formats: PackageFormat[]; key?: SigningKey }> {
  const formats = [...new Set(options.formats)];
  if (formats.length === 0)
    throw new KfarmError('KFARM_USAGE', `--format: give one or more of ${packageFormats.join(', ')}`);
  for (const format of formats) {
    if (!packageFormats.includes(format))
      throw new KfarmError(
        'KFARM_USAGE',
        `--format ${JSON.stringify(format)}: expected one or more of ${packageFormats.join(', ')}`,
      );
  }
  const key =
    options.signKey !== undefined || options.signCert !== undefined
      ? await loadSigningKey(options.signKey, options.signCert)
      : undefined;
  if (options.withSource !== undefined) await checkSourceTree('--with-source', options.withSource);
  if (formats.includes('dkms-deb')) {
    const tree = options.withSource ?? options.source;
    if (tree === undefined)
      throw new KfarmError('KFARM_USAGE', '--format dkms-deb: give the module source it ships (--source SRC)');
    await checkSourceTree('--source', tree);
  }
  if (options.maintainer !== undefined && !/^[^<>\n]+ <[^<>\s]+@[^<>\s]+>$/.test(options.maintainer)) {
    throw new KfarmError('KFARM_USAGE', `--maintainer ${JSON.stringify(options.maintainer)}: expected "Name <email>"`);
  }
  if (
    options.sourceDateEpoch !== undefined &&
    (!Number.isSafeInteger(options.sourceDateEpoch) || options.sourceDateEpoch < 0)
  ) {
    throw new KfarmError(
      'KFARM_USAGE',
      `sourceDateEpoch ${options.sourceDateEpoch}: expected a whole number of seconds`,
    );
  }
  const raw = (options.env ?? process.env)['SOURCE_DATE_EPOCH'];
  if (options.sourceDateEpoch === undefined && raw !== undefined) parseSourceDateEpoch(raw);
  return { formats, ...(key ? { key } : {}) };
}

async function checkSourceTree(flag: string, dir: string): Promise<void> {
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) throw new KfarmError('KFARM_USAGE', `${flag} ${dir}: not a directory`);
  const conf = await stat(join(dir, 'dkms.conf')).catch(() => undefined);
  if (!conf?.isFile()) throw new KfarmError('KFARM_USAGE', `${flag} ${dir}: no dkms.conf in it`);
}
