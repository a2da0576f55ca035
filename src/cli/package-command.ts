import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { ExitCode } from '../model/errors.js';
import { runPipeline } from '../pipeline/index.js';
import { defaultPackageFormats, packageFormats, type PackageFormat } from '../package/index.js';
import type { FarmReport } from '../model/report.js';

export function parseFormats(value: string): PackageFormat[] {
  const formats = value
    .split(',')
    .map((f) => f.trim())
    .filter(Boolean);
  if (formats.length === 0)
    throw new InvalidArgumentError(`--format must name one or more of ${packageFormats.join(', ')}`);
  for (const format of formats) {
    if (!packageFormats.includes(format as PackageFormat)) {
      throw new InvalidArgumentError(
        `--format: unknown format ${JSON.stringify(format)} (expected ${packageFormats.join(', ')})`,
      );
    }
  }
  return formats as PackageFormat[];
}

export function packageCommand(signal: AbortSignal, setExit: (code: number) => void): Command {
  return new Command('package')
    .description(
      'package the modules of a kfarm build output: DKMS tarballs, .deb and .rpm per kernel, optionally signed',
    )
    .argument('<out>', 'output directory of kfarm build (holding report.json and dkms/)')
    .option(
      '-f, --format <list>',
      `comma-separated formats: ${packageFormats.join(', ')} (default ${defaultPackageFormats.join(',')}; ` +
        'dkms-deb ships the source: give --source)',
      parseFormats,
      [...defaultPackageFormats],
    )
    .option(
      '--with-source <src>',
      'put this module source tree in the DKMS tarballs (dkms_source_tree/) instead of a binaries-only dkms.conf',
    )
    .option(
      '--source <src>',
      'module source tree whose last git commit (or newest file) dates the packages when SOURCE_DATE_EPOCH is unset',
    )
    .option('--sign-key <file>', 'private key (PEM or DER, unencrypted) to sign the modules with; needs --sign-cert')
    .option('--sign-cert <file>', 'X.509 certificate (PEM or DER) of --sign-key')
    .option('--maintainer <name-email>', 'Maintainer of the .debs, "Name <email>" (default: $DEBFULLNAME <$DEBEMAIL>)')
    .option('--json', 'print the updated report.json on stdout')
    .addHelpText(
      'after',
      `
Packages go to <out>/packages/, all or nothing; report.json gets "packages" per target.
SOURCE_DATE_EPOCH (seconds) dates every archive member; default: the --source/--with-source tree's last git
commit time, else its newest file, else the build's start time. Two runs with the same value give identical bytes.`,
    )
    .action(async (out: string, opts: PackageOpts) => {
      const log = (line: string) => process.stderr.write(`${line}\n`);
      const { report } = await runPipeline({
        out,
        signal,
        reports: false,
        package: {
          formats: opts.format,
          ...(opts.withSource ? { withSource: opts.withSource } : {}),
          ...(opts.source ? { source: opts.source } : {}),
          ...(opts.signKey !== undefined ? { signKey: opts.signKey } : {}),
          ...(opts.signCert !== undefined ? { signCert: opts.signCert } : {}),
          ...(opts.maintainer ? { maintainer: opts.maintainer } : {}),
          log,
        },
      });
      process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : packageSummary(report, out));
      setExit(ExitCode.ok);
    });
}

function packageSummary(report: FarmReport, out: string): string {
  const lines: string[] = [];
  for (const target of report.targets) {
    if (!target.packages?.length) continue;
    lines.push(`  ${target.id}:`);
    for (const file of target.packages) lines.push(`    ${join(out, file)}`);
  }
  for (const file of report.packages ?? []) lines.push(`  ${join(out, file)}`);
  return lines.length
    ? `${report.module} ${report.version}: packages\n${lines.join('\n')}\n`
    : 'no built target to package\n';
}

interface PackageOpts {
  format: PackageFormat[];
  withSource?: string;
  source?: string;
  signKey?: string;
  signCert?: string;
  maintainer?: string;
  json?: boolean;
}
