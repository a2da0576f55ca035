import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { ExitCode } from '../model/errors.js';
import { badStatuses, type TargetResult, type VerifyResult } from '../model/result.js';
import { runPipeline, type PipelineRun } from '../pipeline/index.js';
import { usableCacheDir } from '../util/cache-dir.js';
import { DEFAULT_VERIFY_TIMEOUT_MS, describeVerify, parseVerifyParams, verifyProgress } from '../verify/index.js';
import { collect, positiveInt } from './options.js';

/**
 * `kfarm verify <out>`: boots each built target's kernel under QEMU and loads its modules (see src/verify/).
 * Exit 0 when every verified target loaded, 1 when one did not or a selected target had failed to build.
 */
export function verifyCommand(signal: AbortSignal, setExit: (code: number) => void): Command {
  return new Command('verify')
    .description(
      'load each built module on the real kernel it was built for: boot that kernel under QEMU and insmod it',
    )
    .argument('<out>', 'output directory of a `kfarm build` (holds report.json)')
    .option('-t, --target <id>', 'verify only this target, repeatable (default: every built target)', collect, [])
    .option('-j, --jobs <n>', 'boots at a time (default: CPU count)', positiveInt('--jobs'))
    .option(
      '--timeout <seconds>',
      'per-boot limit; a target over it is `timeout`',
      positiveInt('--timeout'),
      DEFAULT_VERIFY_TIMEOUT_MS / 1000,
    )
    .option(
      '--verify-params <params>',
      'module parameters: "name=value" for every module of the package, "module.name=value" for one',
      checkParams,
    )
    .option('--cache-dir <dir>', 'cache directory for kernel packages (default: $KFARM_CACHE_DIR or ~/.cache/kfarm)')
    .option('--json', 'print the updated report.json to stdout instead of a summary')
    .action(async (out: string, opts: VerifyOpts) => {
      const log = (line: string) => process.stderr.write(`${line}\n`);
      const cacheDir = await usableCacheDir(opts.cacheDir, (message) => log(`kfarm: warning: ${message}`));
      const run = await runPipeline({
        out,
        signal,
        reports: false,
        verify: {
          ...(opts.target.length ? { targets: opts.target } : {}),
          ...(opts.jobs ? { jobs: opts.jobs } : {}),
          timeoutMs: opts.timeout * 1000,
          ...(opts.verifyParams !== undefined ? { params: opts.verifyParams } : {}),
          cacheDir: cacheDir ?? join(tmpdir(), 'kfarm-cache'),
          onEvent: verifyProgress(log),
        },
      });
      const results = run.verified ?? new Map<string, VerifyResult>();
      const selected = run.report.targets.filter((t) => opts.target.length === 0 || opts.target.includes(t.id));
      process.stdout.write(opts.json ? `${JSON.stringify(run.report, null, 2)}\n` : verifySummary(run, selected, out));
      const notLoaded = [...results.values()].some((r) => r.status !== 'loaded');
      // A target whose build failed has nothing that loads; one the build skipped (BUILD_EXCLUSIVE_*) is fine.
      const unbuilt = selected.some((t) => badStatuses.includes(t.status));
      setExit(notLoaded || unbuilt ? ExitCode.targetFailed : ExitCode.ok);
    });
}

function verifySummary(run: PipelineRun, selected: TargetResult[], out: string): string {
  const results = run.verified ?? new Map<string, VerifyResult>();
  const lines = [`${run.report.module} ${run.report.version}: ${results.size} target(s) verified`];
  for (const target of selected) {
    const result = results.get(target.id);
    if (!result) {
      lines.push(`  ${target.id}: not verified (build ${target.status})`);
      continue;
    }
    lines.push(`  ${target.id}: ${describeVerify(result)}`);
    if (result.log) lines.push(`    ${join(out, result.log)}`);
  }
  lines.push(`report: ${run.reportPath}`);
  return `${lines.join('\n')}\n`;
}

/** Parsed once here so a bad value is a usage error before anything boots. */
function checkParams(value: string): string {
  try {
    parseVerifyParams(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
  return value;
}

interface VerifyOpts {
  target: string[];
  jobs?: number;
  timeout: number;
  verifyParams?: string;
  cacheDir?: string;
  json?: boolean;
}
