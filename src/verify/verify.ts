import { setMaxListeners } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import PQueue from 'p-queue';
import { KfarmError, errorText } from '../model/errors.js';
import type { TargetResult, VerifyResult } from '../model/result.js';
import { targetVersion, type FarmReport } from '../model/report.js';
import { writeFileAtomic } from '../util/atomic.js';
import { loadOrder, type LoadPlan, type LoadStep } from './deps.js';
import { buildInitramfs, type InitramfsModule } from './initramfs.js';
import { shellQuote } from '../util/shell.js';
import { KernelStore, type KernelEvent, type KernelFiles } from './kernel-store.js';
import { parseConsole } from './markers.js';
import { readModuleFile } from './module-index.js';
import { readPackageModules, type LoadedPackageModule } from './package-modules.js';
import { assignParams, parseVerifyParams, type VerifyParam } from './params.js';
import {
  bootKernel,
  detectAccelerator,
  qemuArgs,
  QEMU,
  type Accelerator,
  type BootOptions,
  type BootOutcome,
} from './qemu.js';

export const DEFAULT_VERIFY_TIMEOUT_MS = 120_000;

/** Build statuses whose modules can be load-tested. */
export const VERIFIABLE: ReadonlyArray<TargetResult['status']> = ['built', 'cached'];

export type VerifyEvent =
  | KernelEvent
  | { kind: 'boot'; id: string; accel: Accelerator }
  | { kind: 'result'; id: string; result: VerifyResult }
  /** A requested target whose build produced nothing to load (failed, skipped…). */
  | { kind: 'skip'; id: string; status: TargetResult['status'] };

export interface VerifyOptions {
  /** Target ids to verify (default: every built or cached target). An id not in the report is a usage error. */
  targets?: readonly string[];
  /** Boots at a time (default: CPU count). */
  jobs?: number;
  /** Per-boot limit (default 120 s); past it QEMU is killed and the target is `timeout`. */
  timeoutMs?: number;
  /** `--verify-params`: see params.ts. */
  params?: string;
  signal?: AbortSignal;
  onEvent?: (event: VerifyEvent) => void;
  /** kfarm's cache root (kernels are cached in its `kernels/`). */
  cacheDir?: string;
  /** Default: detectAccelerator(). */
  accel?: Accelerator;
  /** Default /bin/busybox (busybox-static). */
  busybox?: string;
  /** Reuse a store (and its in-flight downloads) across calls. */
  store?: KernelStore;
}

/**
 * Boots each built target's own kernel (Debian's linux-image package, downloaded once and cached) under QEMU
 * with an initramfs that insmods the target's modules and the kernel modules they depend on, checks
 * /proc/modules, rmmods them and powers off. Resolves with one VerifyResult per verified target id (in report
 * order); each console log is written to `<out>/dkms/<m>/<v>/<kver>/<arch>/log/verify.log`.
 *
 * Throws KfarmError for bad options (`--verify-params`, unknown `--target`), an unavailable kernel package
 * or host tool, or interruption; the other boots are stopped first.
 */
export async function verifyTargets(
  out: string,
  report: FarmReport,
  options: VerifyOptions = {},
): Promise<Map<string, VerifyResult>> {
  const root = resolve(out);
  const params = parseVerifyParams(options.params);
  const selected = selectTargets(report, options.targets);
  for (const target of selected.skipped) options.onEvent?.({ kind: 'skip', id: target.id, status: target.status });
  const results = new Map<string, VerifyResult>();
  if (selected.verify.length === 0) return results;

  const abort = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, abort.signal]) : abort.signal;
  // One listener per queued boot: many on a large matrix, not a leak.
  setMaxListeners(0, signal);
  const accel = options.accel ?? (await detectAccelerator());
  const store =
    options.store ??
    new KernelStore({
      ...(options.cacheDir ? { cacheDir: options.cacheDir } : {}),
      signal,
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    });
  const downloads = new PQueue({ concurrency: 2 });
  const boots = new PQueue({ concurrency: Math.max(1, options.jobs ?? cpus().length) });
  const kernels = new Map<string, Promise<KernelFiles>>();
  const kernelOf = (target: TargetResult): Promise<KernelFiles> => {
    let promise = kernels.get(target.kernel);
    if (!promise) {
      promise = downloads.add(() => store.get(target.release, target.kernel), { signal });
      kernels.set(target.kernel, promise);
    }
    return promise;
  };

  // The first failure (an unavailable kernel package, a bad --verify-params prefix, an interruption) stops the
  // other boots and is what gets thrown once they have all ended: no QEMU outlives the call.
  let first: { error: unknown } | undefined;
  await Promise.allSettled(
    selected.verify.map(async (target) => {
      try {
        const files = await kernelOf(target);
        const result = await boots.add(
          () => verifyOne(root, report, target, files, { ...options, accel, params, signal }),
          { signal },
        );
        results.set(target.id, result);
        options.onEvent?.({ kind: 'result', id: target.id, result });
      } catch (error) {
        first ??= { error: options.signal?.aborted ? interrupted(error) : error };
        abort.abort();
      }
    }),
  );
  if (first) throw first.error;
  // Report order, whatever order the boots finished in.
  return new Map(
    selected.verify.flatMap((t) => (results.has(t.id) ? [[t.id, results.get(t.id) as VerifyResult] as const] : [])),
  );
}

/** The report with each verified target's `verify` set; other targets unchanged. */
export function withVerifyResults(report: FarmReport, results: ReadonlyMap<string, VerifyResult>): FarmReport {
  return {
    ...report,
    targets: report.targets.map((t) => (results.has(t.id) ? { ...t, verify: results.get(t.id) } : t)),
  };
}

/** Where a target's console log goes, relative to the output directory (beside make.log). */
export function verifyLogPath(
  report: Pick<FarmReport, 'module' | 'version'>,
  target: Pick<TargetResult, 'kernel' | 'arch' | 'version'>,
): string {
  return `dkms/${report.module}/${targetVersion(report, target)}/${target.kernel}/${target.arch}/log/verify.log`;
}

function selectTargets(
  report: FarmReport,
  ids: readonly string[] | undefined,
): { verify: TargetResult[]; skipped: TargetResult[] } {
  const wanted = ids && ids.length > 0 ? new Set(ids) : undefined;
  for (const id of wanted ?? []) {
    if (!report.targets.some((t) => t.id === id)) {
      throw new KfarmError(
        'KFARM_TARGET_UNKNOWN',
        `--target ${id}: not in the report (it has ${report.targets.map((t) => t.id).join(', ') || 'no targets'})`,
      );
    }
  }
  const chosen = report.targets.filter((t) => !wanted || wanted.has(t.id));
  const verify = chosen.filter((t) => VERIFIABLE.includes(t.status) && t.artifacts.some((a) => a.endsWith('.ko')));
  return { verify, skipped: chosen.filter((t) => !verify.includes(t)) };
}

interface OneOptions extends Omit<VerifyOptions, 'params'> {
  accel: Accelerator;
  params: VerifyParam[];
  signal: AbortSignal;
}

async function verifyOne(
  out: string,
  report: FarmReport,
  target: TargetResult,
  kernel: KernelFiles,
  options: OneOptions,
): Promise<VerifyResult> {
  const started = Date.now();
  const log = verifyLogPath(report, target);
  const modules = await readPackageModules(out, target);
  let plan: LoadPlan;
  try {
    plan = loadOrder(modules, (name) => kernel.index.modules[name]?.depends);
  } catch (error) {
    // A cycle: the kernel could not load these modules either.
    const result: VerifyResult = {
      status: 'load-failed',
      reason: errorText(error),
      log,
      durationMs: Date.now() - started,
    };
    await writeLog(out, log, [`kfarm verify: ${target.id}`, `result: load-failed: ${result.reason}`]);
    return result;
  }
  const initramfsModules = await modulesToLoad(plan, modules, kernel, options);

  const temp = await mkdtemp(join(tmpdir(), 'kfarm-verify-'));
  try {
    const initrd = join(temp, 'initrd.cpio.gz');
    await writeFile(
      initrd,
      await buildInitramfs({
        modules: initramfsModules,
        missing: plan.missing,
        ...(options.busybox ? { busybox: options.busybox } : {}),
      }),
    );
    options.onEvent?.({ kind: 'boot', id: target.id, accel: options.accel });
    const timeoutMs = options.timeoutMs ?? DEFAULT_VERIFY_TIMEOUT_MS;
    const boot = { vmlinuz: kernel.vmlinuz, initrd, timeoutMs, accel: options.accel, signal: options.signal };
    const outcome = await bootKernel(boot);
    const verdict = parseConsole(outcome.console, {
      timedOut: outcome.timedOut,
      exitCode: outcome.exitCode,
      timeoutMs,
      stderr: outcome.stderr,
    });
    const result: VerifyResult = {
      status: verdict.status,
      log,
      ...(verdict.reason ? { reason: verdict.reason } : {}),
      durationMs: Date.now() - started,
    };
    await writeLog(out, log, bootLog({ target, kernel, plan, modules, boot, outcome, result }));
    return result;
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

/** The ELF bytes and insmod arguments of every module in `plan`, in load order. */
async function modulesToLoad(
  plan: LoadPlan,
  modules: LoadedPackageModule[],
  kernel: KernelFiles,
  options: OneOptions,
): Promise<InitramfsModule[]> {
  const dependencies = plan.order.filter((s) => s.source === 'kernel').map((s) => s.name);
  const args = assignParams(
    options.params,
    modules.map((m) => m.name),
    dependencies,
  );
  const initramfsModules: InitramfsModule[] = [];
  for (const step of plan.order) {
    const elf =
      step.source === 'package'
        ? (modules.find((m) => m.name === step.name)?.elf as Buffer)
        : await readModuleFile(
            join(kernel.modulesDir, kernel.index.modules[step.name]?.path as string),
            options.signal,
          );
    initramfsModules.push({ name: step.name, source: step.source, elf, args: args.get(step.name) ?? [] });
  }
  return initramfsModules;
}

/** verify.log of a boot: what was booted and loaded, the QEMU command line, the verdict, then the console. */
function bootLog(facts: {
  target: TargetResult;
  kernel: KernelFiles;
  plan: LoadPlan;
  modules: LoadedPackageModule[];
  boot: BootOptions;
  outcome: BootOutcome;
  result: VerifyResult;
}): string[] {
  const { target, plan, modules, boot, outcome, result } = facts;
  const image = facts.kernel.image;
  const fileOf = (s: LoadStep) => (s.source === 'kernel' ? 'kernel' : modules.find((m) => m.name === s.name)?.file);
  const ending = outcome.timedOut ? ', killed at the time limit' : `, QEMU exit ${outcome.exitCode ?? 'signal'}`;
  return [
    `kfarm verify: ${target.id}`,
    `kernel: ${image.package} ${image.version} (${image.suite}) ${image.url}`,
    `modules: ${plan.order.map((s) => `${s.name} (${fileOf(s)})`).join(', ')}`,
    ...(plan.missing.length
      ? [`missing dependencies: ${plan.missing.map(([by, dep]) => `${dep} (needed by ${by})`).join(', ')}`]
      : []),
    `qemu: ${[QEMU, ...qemuArgs({ ...boot, initrd: 'initrd.cpio.gz' })].map(shellQuote).join(' ')}`,
    `result: ${result.status}${result.reason ? `: ${result.reason}` : ''} (boot ${(outcome.durationMs / 1000).toFixed(1)} s${ending})`,
    ...(outcome.stderr ? ['----- qemu stderr -----', outcome.stderr] : []),
    '----- console -----',
    outcome.console.trimEnd(),
  ];
}

async function writeLog(out: string, log: string, lines: string[]): Promise<void> {
  const path = join(out, log);
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, `${lines.join('\n')}\n`);
}

function interrupted(error: unknown): unknown {
  return error instanceof KfarmError && error.code === 'KFARM_INTERRUPTED'
    ? error
    : new KfarmError('KFARM_INTERRUPTED', 'interrupted', { cause: error });
}
