import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { ExitCode } from '../errors.js';
import { farmConcurrency, runFarm } from '../farm/run.js';
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
    .option('-m, --matrix <file>', 'matrix file of target kernels (default when no --target: matrix/debian-supported.yaml)')
    .option('-o, --out <dir>', 'output directory', 'out')
    .option('-j, --jobs <n>', 'builds at a time (default: CPU count)', positiveInt('--jobs'))
    .option('--timeout <seconds>', 'per-target build timeout', positiveInt('--timeout'), 1800)
    .option('--memory <size>', 'memory limit of each build container, e.g. 2g', byteSize('--memory'))
    .option('--fail-fast', 'stop scheduling builds after the first failure')
    .option('--no-cache', 'build every target even when an identical build is cached')
    .option('--cache-dir <dir>', 'cache directory (default: $KFARM_CACHE_DIR or ~/.cache/kfarm)')
    .option('--refresh', 'refetch package indexes instead of using the cached ones')
    .option('--json', 'print report.json to stdout instead of a summary')
    .action(async (src: string, opts: BuildOpts) => {
      const matrix = opts.matrix ?? (opts.target.length === 0 ? defaultMatrix : undefined);
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
        ...(opts.memory ? { memoryBytes: opts.memory } : {}),
        ...(opts.failFast ? { failFast: true } : {}),
        cache: opts.cache ? { dir: cacheRoot(opts.cacheDir) } : false,
        signal,
        events: progress.events,
        // Under GitHub Actions, annotations are workflow commands on stdout, unless stdout carries JSON.
        annotations: (text) => (opts.json ? process.stderr : process.stdout).write(text),
      });
      const { report, reportPath } = await run.finally(() => progress.stop());
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        const lines = [`${report.module} ${report.version}: ${targets.length} target(s)`];
        for (const target of report.targets) {
          lines.push(`  ${target.id}: ${describeResult(target)}`);
          for (const artifact of target.artifacts) lines.push(`    ${join(opts.out, artifact)}`);
        }
        lines.push(`reports: ${reportPath}, junit.xml, summary.md`);
        process.stdout.write(`${lines.join('\n')}\n`);
      }
      const bad = report.targets.some((t) => badStatuses.includes(t.status));
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
  refresh?: boolean;
  json?: boolean;
}
