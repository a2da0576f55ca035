import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Command, Option } from 'commander';
import { KfarmError } from '../model/errors.js';
import { moduleTitle, type FarmReport } from '../model/report.js';
import { packageFormats, type PackageFormat } from '../package/index.js';
import { compatibilityLines } from '../report/compat.js';
import { farmConcurrency } from '../farm/run.js';
import { checkPipelineInputs, pipelineExitCode, runPipeline, type PipelineOptions } from '../pipeline/index.js';
import { resolvePlan } from '../plan/resolve.js';
import { parseShard, planShards, shardTargets, type ShardSpec } from '../plan/shard.js';
import type { KernelTarget } from '../model/target.js';
import { splitPackageList } from '../plan/build-deps.js';
import { preflightSource, readConfOverride } from '../dkms/preflight.js';
import { describeResult } from '../report/plain.js';
import { createProgress } from '../report/tty.js';
import { usableCacheDir } from '../util/cache-dir.js';
import { packageDir } from '../util/paths.js';
import { DEFAULT_VERIFY_TIMEOUT_MS, describeVerify, verifyProgress } from '../verify/index.js';
import { openBuildSource, type BuildSource } from './build-source.js';
import { byteSize, collect, positiveInt } from './options.js';
import { parseFormats } from './package-command.js';

export const defaultMatrix = join(packageDir, 'matrix/debian-supported.yaml');

/** The matrix file `--matrix`/`--target` name: the default one when neither is given (build and plan alike). */
export function matrixOfTargets(opts: { matrix?: string; target: string[] }): string | undefined {
  return opts.matrix ?? (opts.target.length === 0 ? defaultMatrix : undefined);
}

export function buildCommand(signal: AbortSignal, setExit: (code: number) => void): Command {
  return new Command('build')
    .description('build a DKMS module source tree for every target kernel, each in its own container')
    .argument(
      '<src>',
      "module source tree containing dkms.conf, a *-dkms .deb, or debian:<name> (each target release's own package)",
    )
    .option('-t, --target <id>', 'target kernel <distro>/<release>/<kernel-release>, repeatable', collect, [])
    .option(
      '-m, --matrix <file>',
      'matrix file of target kernels (default when no --target: matrix/debian-supported.yaml)',
    )
    .option('-o, --out <dir>', 'output directory', 'out')
    .option('-j, --jobs <n>', 'builds at a time (default: CPU count)', positiveInt('--jobs'))
    .option('--timeout <seconds>', 'per-target build timeout', positiveInt('--timeout'), 1800)
    .option('--memory <size>', 'memory limit of each build container, e.g. 2g', byteSize('--memory'))
    .option(
      '--disk <size>',
      'what a build may write per in-memory mount (build dir, /tmp, /kfarm), default 2g',
      byteSize('--disk'),
    )
    .option(
      '--build-deps <packages>',
      'distribution packages the builders need besides the toolchain (e.g. "pkgconf libxtables-dev"), repeatable',
      collect,
      [],
    )
    .option(
      '--with-module <src>',
      'a DKMS package built and installed first for each kernel, as BUILD_DEPENDS needs (a tree, .deb or debian:<name>), repeatable',
      collect,
      [],
    )
    .option(
      '--dkms-conf-override <file>',
      "sourced after dkms.conf, as DKMS sources /etc/dkms/<module>.conf (e.g. a module's PACKAGE_CONFIG settings)",
    )
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
    .addOption(new Option('--verify', 'then boot each built kernel under QEMU and load the module (see kfarm verify)'))
    .addOption(verifyParamsOption)
    .addOption(verifyTimeoutOption())
    .option('--shard <i/N>', 'build only shard i of N of the targets, as `kfarm plan --shards N` splits them')
    .option('--json', 'print report.json to stdout instead of a summary')
    .action((src: string, opts: BuildOpts) => runBuild(src, opts, signal, setExit));
}

const verifyParamsOption = new Option(
  '--verify-params <params>',
  'module parameters for --verify: "name=value" or "module.name=value"',
);

function verifyTimeoutOption(): Option {
  return new Option('--verify-timeout <seconds>', 'per-boot limit for --verify')
    .argParser(positiveInt('--verify-timeout'))
    .default(DEFAULT_VERIFY_TIMEOUT_MS / 1000);
}

/** `kfarm build`: check local inputs, resolve the targets, run the pipeline, print the summary. */
async function runBuild(src: string, opts: BuildOpts, signal: AbortSignal, setExit: (code: number) => void) {
  const shard = opts.shard === undefined ? undefined : parseShard(opts.shard);
  if (!opts.package && (opts.signKey !== undefined || opts.signCert !== undefined)) {
    throw new KfarmError('KFARM_USAGE', '--sign-key/--sign-cert sign packaged modules: add --package');
  }
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const cacheDir = await usableCacheDir(opts.cacheDir, (message) => log(`kfarm: warning: ${message}`));
  const override = opts.dkmsConfOverride === undefined ? undefined : await readConfOverride(opts.dkmsConfOverride);
  const sources: BuildSource[] = [];
  try {
    // The module first: what it says about itself (a .deb's Depends) is logged before its dependencies.
    sources.push(await openBuildSource(src, { cacheDir, log, signal }));
    for (const each of opts.withModule) sources.push(await openWithModule(each, { cacheDir, log, signal }));
    const [source, ...withSources] = sources as [BuildSource, ...BuildSource[]];
    const context = { src: source.tree ?? src, opts, log, cacheDir, signal, ...(shard ? { shard } : {}) };
    const withOverride = { ...context, ...(override ? { confOverride: override.text } : {}) };
    await buildFrom({ source, withSources }, withOverride, setExit);
  } finally {
    for (const source of sources) await source.close();
  }
}

/** A `--with-module` source; its errors name the flag, since the same problems are the module's own otherwise. */
async function openWithModule(spec: string, options: Parameters<typeof openBuildSource>[1]): Promise<BuildSource> {
  let source: BuildSource | undefined;
  try {
    source = await openBuildSource(spec, options);
    // Checked here as well as by the pipeline, so that a bad tree's error names the flag it came from.
    if (source.tree !== undefined) await preflightSource(source.tree);
    return source;
  } catch (error) {
    await source?.close();
    if (!(error instanceof KfarmError)) throw error;
    throw new KfarmError(error.code, `--with-module ${error.message}`, { exitCode: error.exitCode, cause: error });
  }
}

async function buildFrom(
  { source, withSources }: { source: BuildSource; withSources: BuildSource[] },
  context: BuildContext,
  setExit: (code: number) => void,
) {
  const { opts } = context;
  // A `debian:` source's tree, which a -dkms package ships, is known only once it is fetched: checked then.
  const earlyFormats = (opts.package ?? []).filter((f) => f !== 'dkms-deb' || source.tree !== undefined);
  // Local inputs first: a typo in dkms.conf or a bad key costs a second, not an index download.
  await checkPipelineInputs({
    // The --with-module trees known yet were checked when opened (openWithModule), naming the flag.
    ...(source.tree === undefined ? {} : { source: source.tree }),
    ...(earlyFormats.length > 0 ? { package: packageOptions(context, earlyFormats, source.tree) } : {}),
    ...(opts.verify || opts.verifyParams !== undefined ? { verify: verifyOptions(context) } : {}),
  });
  const plan = inShard(await resolveSourcesPlan([source, ...withSources], context), context.shard);
  const trees = source.releaseTrees;
  if (source.tree === undefined) context.src = trees.get(plan.targets[0]?.release ?? '') ?? context.src;
  checkOneSourceToShip(opts, trees);
  const progress = createProgress(process.stderr, {
    total: plan.targets.length,
    concurrency: farmConcurrency({ jobs: opts.jobs, targets: plan.targets }),
  });
  const built = {
    ...plan,
    ...(trees.size > 0 ? { releaseTrees: trees } : {}),
    ...(withSources.length > 0 ? { withModules: withSources.map(asFarmSource) } : {}),
    packageTrees: packageTrees([source, ...withSources]),
    events: progress.events,
  };
  const run = await runPipeline(pipelineOptions(context, built)).finally(() => progress.stop());
  process.stdout.write(
    opts.json ? `${JSON.stringify(run.report, null, 2)}\n` : buildSummary(run.report, opts.out, run.reportPath),
  );
  setExit(pipelineExitCode(run.report));
}

/**
 * The targets, with the build dependencies of every source (`--build-deps`, a .deb's Depends, each release's own
 * package's Depends for a `debian:` source).
 */
function resolveSourcesPlan(sources: BuildSource[], { opts, signal }: BuildContext) {
  const matrix = matrixOfTargets(opts);
  const perRelease = sources.flatMap((s) => (s.forRelease ? [s.forRelease] : []));
  return resolvePlan({
    ids: opts.target,
    ...(matrix ? { matrix } : {}),
    buildDeps: [
      { names: opts.buildDeps.flatMap(splitPackageList), where: '--build-deps' },
      ...sources.flatMap((s) => (s.deps ? [s.deps] : [])),
    ],
    ...(perRelease.length > 0
      ? {
          releaseBuildDeps: async (release: string) =>
            (await Promise.all(perRelease.map((of) => of(release)))).map((fetched) => fetched.deps),
        }
      : {}),
    ...(opts.refresh ? { refresh: true } : {}),
    signal,
  });
}

/** The plan cut to `--shard i/N`'s targets; a shard past the last one the targets make is a usage error. */
function inShard<P extends { targets: KernelTarget[] }>(plan: P, shard: ShardSpec | undefined): P {
  if (!shard) return plan;
  const targets = shardTargets(plan.targets, shard);
  if (targets.length > 0) return { ...plan, targets };
  const made = planShards(plan.targets, shard.count).length;
  throw new KfarmError(
    'KFARM_USAGE',
    `--shard ${shard.index}/${shard.count}: no targets in this shard (${plan.targets.length} targets make ${made} shards)`,
  );
}

/** The trees unpacked from packages (all fetched by now): DKMS takes their version from the directory name. */
function packageTrees(sources: BuildSource[]): Set<string> {
  return new Set(
    sources
      .filter((s) => s.fromPackage)
      .flatMap((s) => [...(s.tree === undefined ? [] : [s.tree]), ...s.releaseTrees.values()]),
  );
}

/** A `--with-module` source as the farm takes it: one tree, or one per release (all fetched by now). */
function asFarmSource(source: BuildSource): { source: string; releaseTrees?: ReadonlyMap<string, string> } {
  const first = [...source.releaseTrees.values()][0];
  return { source: source.tree ?? first ?? '', releaseTrees: source.releaseTrees };
}

interface BuildContext {
  src: string;
  opts: BuildOpts;
  /** The --dkms-conf-override file's text. */
  confOverride?: string;
  log: (line: string) => void;
  /** kfarm's cache directory, or undefined when the default one is unusable (then nothing is cached). */
  cacheDir: string | undefined;
  signal: AbortSignal;
  shard?: ShardSpec;
}

/** The command line as pipeline options: build, then verify and package when asked, then the reports. */
function pipelineOptions(
  context: BuildContext,
  plan: Pick<
    NonNullable<PipelineOptions['build']>,
    'targets' | 'knownFailing' | 'events' | 'releaseTrees' | 'withModules' | 'packageTrees'
  >,
): PipelineOptions {
  const { src, opts, cacheDir } = context;
  return {
    out: opts.out,
    signal: context.signal,
    build: {
      source: src,
      ...plan,
      ...(opts.jobs ? { jobs: opts.jobs } : {}),
      timeoutMs: opts.timeout * 1000,
      ...(opts.memory ? { memoryBytes: opts.memory } : {}),
      ...(opts.disk ? { diskBytes: opts.disk } : {}),
      ...(opts.failFast ? { failFast: true } : {}),
      ...(context.confOverride === undefined ? {} : { confOverride: context.confOverride }),
      cache: opts.cache && cacheDir ? { dir: cacheDir } : false,
      logDir: cacheDir ? join(cacheDir, 'logs') : join(tmpdir(), 'kfarm-logs'),
    },
    ...(opts.verify ? { verify: verifyOptions(context) } : {}),
    ...(opts.package ? { package: packageOptions(context, opts.package) } : {}),
    // Under GitHub Actions, annotations are workflow commands on stdout, unless stdout carries JSON.
    reports: { stdout: (text: string) => void (opts.json ? process.stderr : process.stdout).write(text) },
  };
}

function verifyOptions({ opts, cacheDir, log }: BuildContext): NonNullable<PipelineOptions['verify']> {
  return {
    ...(opts.jobs ? { jobs: opts.jobs } : {}),
    timeoutMs: opts.verifyTimeout * 1000,
    ...(opts.verifyParams !== undefined ? { params: opts.verifyParams } : {}),
    // Kernel packages are cached there; without a usable cache they are fetched into a temporary one.
    cacheDir: cacheDir ?? join(tmpdir(), 'kfarm-cache'),
    onEvent: verifyProgress(log),
  };
}

/** `tree`: the source tree, when it is known yet (a `debian:` source's trees are fetched after the targets). */
function packageOptions(
  { src, opts, log }: BuildContext,
  formats: PackageFormat[],
  tree: string | undefined = src,
): NonNullable<PipelineOptions['package']> {
  return {
    formats,
    ...(tree === undefined ? {} : { source: tree }),
    ...(opts.packageWithSource && tree !== undefined ? { withSource: tree } : {}),
    ...(opts.signKey !== undefined ? { signKey: opts.signKey } : {}),
    ...(opts.signCert !== undefined ? { signCert: opts.signCert } : {}),
    log,
  };
}

/** DKMS tarballs carry one source tree: a `debian:` source whose releases have different versions has several. */
function checkOneSourceToShip(opts: BuildOpts, trees: ReadonlyMap<string, string>): void {
  const versions = new Set([...trees.values()].map((tree) => basename(tree)));
  if ((opts.packageWithSource || opts.package?.includes('dkms-deb')) && versions.size > 1)
    throw new KfarmError(
      'KFARM_USAGE',
      `${opts.packageWithSource ? '--package-with-source' : '--package dkms-deb'}: the releases' packages hold ` +
        `different sources (${[...versions].join(', ')}); package one release at a time`,
    );
}

/** The human summary: one line per target (and its load result), then where each file is. */
function buildSummary(report: FarmReport, out: string, reportPath: string): string {
  const lines = [`${moduleTitle(report)}: ${report.targets.length} target(s)`];
  for (const target of report.targets) {
    lines.push(`  ${target.id}: ${describeResult(target)}${target.verify ? `; ${describeVerify(target.verify)}` : ''}`);
    for (const artifact of [...target.artifacts, ...(target.packages ?? [])]) lines.push(`    ${join(out, artifact)}`);
  }
  for (const file of report.packages ?? []) lines.push(`  ${join(out, file)}`);
  lines.push(...compatibilityLines(report.compatibility ?? []));
  lines.push(`reports: ${reportPath}, junit.xml, summary.md`);
  return `${lines.join('\n')}\n`;
}

interface BuildOpts {
  target: string[];
  matrix?: string;
  out: string;
  jobs?: number;
  timeout: number;
  memory?: number;
  disk?: number;
  failFast?: boolean;
  buildDeps: string[];
  withModule: string[];
  dkmsConfOverride?: string;
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
  shard?: string;
}
