import { Command, InvalidArgumentError } from 'commander';
import { ExitCode } from '../model/errors.js';
import { publish, type PublishResult } from '../publish/index.js';

function parseKeep(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new InvalidArgumentError(`--keep-kernels: expected a whole number ≥ 1`);
  return n;
}

export function publishCommand(setExit: (code: number) => void): Command {
  return new Command('publish')
    .description('add the packages of kfarm build outputs to signed apt and/or yum repositories')
    .argument('<outs...>', 'output directories of kfarm build --package / kfarm package')
    .option(
      '--apt <dir>',
      'apt repository: one distribution per Debian release, with metapackages that follow the kernel',
    )
    .option('--yum <dir>', 'yum/dnf repository of the .rpm files (createrepo_c)')
    .option('--gpg-key <file|id>', 'OpenPGP secret key file, or a key ID/fingerprint of your keyring (gpg-agent)')
    .option(
      '--keep-kernels <n>',
      'per module and flavour, keep the newest N kernels in each apt distribution',
      parseKeep,
    )
    .option('--origin <text>', 'Origin and Label of the apt Release files (default kfarm)')
    .option('--json', 'print what was published as JSON')
    .addHelpText(
      'after',
      `
Repositories are incremental (earlier packages stay unless --keep-kernels leaves them out), switched in
atomically, and byte-reproducible for the same inputs and SOURCE_DATE_EPOCH (default: now). The public key is
written beside the indexes as archive-key.asc.`,
    )
    .action(async (outs: string[], opts: PublishOpts) => {
      const log = (line: string) => process.stderr.write(`${line}\n`);
      const result = await publish({
        outs,
        gpgKey: opts.gpgKey ?? '',
        ...(opts.apt ? { apt: opts.apt } : {}),
        ...(opts.yum ? { yum: opts.yum } : {}),
        ...(opts.keepKernels === undefined ? {} : { keepKernels: opts.keepKernels }),
        ...(opts.origin ? { origin: opts.origin } : {}),
        log,
      });
      process.stdout.write(opts.json ? `${JSON.stringify(result, null, 2)}\n` : publishSummary(result, opts));
      setExit(ExitCode.ok);
    });
}

function publishSummary(result: PublishResult, opts: PublishOpts): string {
  const lines: string[] = [];
  for (const dist of result.apt ?? []) {
    const metas = dist.metapackages.map((m) => `${m.package} → ${m.kernel}`).join(', ');
    lines.push(`${opts.apt}: ${dist.release}: ${dist.packages.length} package(s)${metas ? `; ${metas}` : ''}`);
    if (dist.removed.length) lines.push(`  removed: ${dist.removed.join(', ')}`);
  }
  if (result.yum) lines.push(`${opts.yum}: ${result.yum.length} package(s)`);
  return `${lines.join('\n')}\n`;
}

interface PublishOpts {
  apt?: string;
  yum?: string;
  gpgKey?: string;
  keepKernels?: number;
  origin?: string;
  json?: boolean;
}
