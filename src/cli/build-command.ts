import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { ExitCode, KfarmError, isKfarmError } from '../errors.js';
import { checkPackageOptions, packageOutput } from '../package/package.js';
import { resolveSourceDateEpoch } from '../package/epoch.js';
import { packageFormats, type PackageFormat } from '../package/types.js';
import { parseFormats } from './package-command.js';
import { buildDirOf, farmConcurrency, runFarm } from '../farm/run.js';
import { readJsonReport, type FarmReport } from '../report/json.js';
import { writeReports } from '../report/write-reports.js';
import {
  DEFAULT_VERIFY_TIMEOUT_MS,
  describeVerify,
  parseVerifyParams,
  verifyProgress,
  verifyReport,
} from '../verify/index.js';
import { badStatuses } from '../farm/types.js';
import { releaseSources, resolvePlan } from '../plan/resolve.js';
import { describeResult } from '../report/plain.js';
import { createProgress } from '../report/tty.js';
import { cacheRoot } from '../util/cache-dir.js';
import { byteSize, collect, positiveInt } from './options.js';

export const defaultMatrix = fileURLToPath(new URL('../../matrix/debian-supported.yaml', import.meta.url));

export function buildCommand(signal: AbortSignal, setExit: (code: number) => void): Command {
  return new Command('build')
    .description('build a DKMS module source tree for every target kernel, each in its own container')
    .argument('<src>', 'module source tree containing dkms.conf')
    .option('-t, --target <id>', 'target kernel <distro>/<release>/<kernel-release>, repeatable', collect, [])
    .option(
      '-m, --matrix <file>',
      'matrix file of target kernels (default when no --target: matrix/debian-supported.yaml)',
    )
    .option('-o, --out <dir>', 'output directory', 'out')
    .option('-j, --jobs <n>', 'builds at a time (default: CPU count)', positiveInt('--jobs'))
    .option('--timeout <seconds>', 'per-target build timeout', positiveInt('--timeout'), 1800)
    .option('--memory <size>', 'memory limit of each build container, e.g. 2g', byteSize('--memory'))
    .option('--fail-fast', 'stop scheduling builds after the first failure')
    .option('--no-cache', 'build every target even when an identical build is cached')
    .option('--cache-dir <dir>', 'cache directory (default: $KFARM_CACHE_DIR or ~/.cache/kfarm)')
    .option('--refresh', 'refetch package indexes instead of using the cached ones')
    .option(
      '--package <formats>',
      `also package the result: comma-separated ${packageFormats.join(', ')}`,
      parseFormats,
    )
    .option('--package-with-source', 'DKMS tarballs carry the source tree instead of a binaries-only dkms.conf')
    .option('--sign-key <file>', 'sign packaged modules with this private key (PEM or DER); needs --sign-cert')
    .option('--sign-cert <file>', 'X.509 certificate (PEM or DER) of --sign-key')
    .option('--verify', 'then boot each built kernel under QEMU and load the module (see kfarm verify)')
    .option('--verify-params <params>', 'module parameters for --verify: "name=value" or "module.name=value"')
    .option(
      '--verify-timeout <seconds>',
      'per-boot limit for --verify',
      positiveInt('--verify-timeout'),
      DEFAULT_VERIFY_TIMEOUT_MS / 1000,
    )
    .option('--json', 'print report.json to stdout instead of a summary')
    .action(async (src: string, opts: BuildOpts) => {
      const matrix = opts.matrix ?? (opts.target.length === 0 ? defaultMatrix : undefined);
      // Reproducible builds and packages: every archive and make.log is dated by the source, not the clock.
      const sourceDateEpoch = await resolveSourceDateEpoch(src);
      const packaging = opts.package
        ? {
            formats: opts.package,
            source: src,
            ...(opts.packageWithSource ? { withSource: src } : {}),
            ...(opts.signKey !== undefined ? { signKey: opts.signKey } : {}),
            ...(opts.signCert !== undefined ? { signCert: opts.signCert } : {}),
            ...(sourceDateEpoch === undefined ? {} : { sourceDateEpoch }),
            signal,
          }
        : undefined;
      if (!packaging && (opts.signKey !== undefined || opts.signCert !== undefined)) {
        throw new KfarmError('KFARM_USAGE', '--sign-key/--sign-cert sign packaged modules: add --package');
      }
      // A bad key, format or parameter must fail before any build starts, not after an hour of them.
      if (packaging) await checkPackageOptions(packaging);
      if (opts.verifyParams !== undefined) parseVerifyParams(opts.verifyParams);
      const { targets, knownFailing } = await resolvePlan({
        ids: opts.target,
        ...(matrix ? { matrix } : {}),
        ...(opts.refresh ? { refresh: true } : {}),
        signal,
      });
      const options = { jobs: opts.jobs, targets };
      const progress = createProgress(process.stderr, { total: targets.length, concurrency: farmConcurrency(options) });
      const run = runFarm({
        source: src,
        out: opts.out,
        targets,
        sources: releaseSources,
        ...(opts.jobs ? { jobs: opts.jobs } : {}),
        timeoutMs: opts.timeout * 1000,
        knownFailing,
        ...(sourceDateEpoch === undefined ? {} : { sourceDateEpoch }),
        ...(opts.memory ? { memoryBytes: opts.memory } : {}),
        ...(opts.failFast ? { failFast: true } : {}),
        cache: opts.cache ? { dir: cacheRoot(opts.cacheDir) } : false,
        signal,
        events: progress.events,
      });
      const log = (line: string) => process.stderr.write(`${line}\n`);
      // Reports for people and CI are written last, once verify and package have added to report.json —
      // and also for an interrupted run, from the partial report.json runFarm wrote.
      const reports = async (final: FarmReport) =>
        writeReports(opts.out, final, {
          sourceDir: src,
          buildDirOf: () => buildDirOf({ packageName: final.module, packageVersion: final.version }),
          // Under GitHub Actions, annotations are workflow commands on stdout, unless stdout carries JSON.
          stdout: (text) => (opts.json ? process.stderr : process.stdout).write(text),
        });
      const built = await run
        .catch(async (error: unknown) => {
          if (isKfarmError(error, 'KFARM_INTERRUPTED'))
            await reports(await readJsonReport(opts.out)).catch(() => undefined);
          throw error;
        })
        .finally(() => progress.stop());
      const reportPath = built.reportPath;
      let report = built.report;
      if (opts.verify) {
        const verified = await verifyReport(opts.out, report, {
          ...(opts.jobs ? { jobs: opts.jobs } : {}),
          timeoutMs: opts.verifyTimeout * 1000,
          ...(opts.verifyParams !== undefined ? { params: opts.verifyParams } : {}),
          cacheDir: cacheRoot(opts.cacheDir),
          signal,
          onEvent: verifyProgress(log),
        });
        report = verified.report;
      }
      if (packaging) report = await packageOutput(opts.out, report, { ...packaging, log });
      await reports(report);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        const lines = [`${report.module} ${report.version}: ${targets.length} target(s)`];
        for (const target of report.targets) {
          lines.push(
            `  ${target.id}: ${describeResult(target)}${target.verify ? `; ${describeVerify(target.verify)}` : ''}`,
          );
          for (const artifact of [...target.artifacts, ...(target.packages ?? [])])
            lines.push(`    ${join(opts.out, artifact)}`);
        }
        lines.push(`reports: ${reportPath}, junit.xml, summary.md`);
        process.stdout.write(`${lines.join('\n')}\n`);
      }
      const bad = report.targets.some(
        (t) => badStatuses.includes(t.status) || (t.verify !== undefined && t.verify.status !== 'loaded'),
      );
      setExit(bad ? ExitCode.targetFailed : ExitCode.ok);
    });
}

interface BuildOpts {
  target: string[];
  matrix?: string;
  out: string;
  jobs?: number;
  timeout: number;
  memory?: number;
  failFast?: boolean;
  cache: boolean;
  cacheDir?: string;
  package?: PackageFormat[];
  packageWithSource?: boolean;
  signKey?: string;
  signCert?: string;
  verify?: boolean;
  verifyParams?: string;
  verifyTimeout: number;
  refresh?: boolean;
  json?: boolean;
}
