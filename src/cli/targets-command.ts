import { Command } from 'commander';
import { KfarmError } from '../model/errors.js';
import { discoverKernels, FLAVOURS } from '../plan/debian-index.js';
import { DEBIAN_RELEASES } from '../plan/debian-releases.js';
import { collect, formatTable } from './options.js';

export function targetsCommand(signal: AbortSignal, _setExit: (code: number) => void): Command {
  return new Command('targets')
    .description("list every kernel whose headers the distribution publishes (read from the archive's package indexes)")
    .option('--distro <name>', 'distribution', 'debian')
    .option('-r, --release <name>', `release, repeatable (default: all of ${DEBIAN_RELEASES.join(', ')})`, collect, [])
    .option('-f, --flavour <name>', `flavour, repeatable (default: all of ${FLAVOURS.join(', ')})`, collect, [])
    .option('--no-backports', 'leave out <release>-backports kernels')
    .option('--refresh', 'refetch package indexes instead of using the cached ones (kept 1 hour)')
    .option('--json', 'print JSON')
    .action(
      async (opts: {
        distro: string;
        release: string[];
        flavour: string[];
        backports: boolean;
        refresh?: boolean;
        json?: boolean;
      }) => {
        if (opts.distro !== 'debian')
          throw new KfarmError('KFARM_USAGE', `--distro ${JSON.stringify(opts.distro)}: kfarm knows debian`);
        const kernels = await discoverKernels({
          distro: 'debian',
          ...(opts.release.length ? { releases: opts.release } : {}),
          ...(opts.flavour.length ? { flavours: opts.flavour } : {}),
          includeBackports: opts.backports,
          ...(opts.refresh ? { refresh: true } : {}),
          signal,
        });
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(kernels, null, 2)}\n`);
          return;
        }
        const rows = [
          ['TARGET', 'FLAVOUR', 'HEADERS', 'VERSION', 'SUITE'],
          ...kernels.map((k) => [k.id, k.flavour, k.headersPackage, k.headersVersion, k.suite]),
        ];
        process.stdout.write(formatTable(rows));
      },
    );
}
