import { Writable } from 'node:stream';
import { KfarmError } from '../model/errors.js';
import { TextTail } from '../util/text-tail.js';
import { parseConfRecords } from './conf-records.js';
import { DKMS_TREE, SOURCE_TREE, buildDirOf } from './paths.js';
import { planFromConf, type DkmsPlan } from './plan.js';
import { runtimeScripts } from './runtime.js';

/**
 * Runs a bash script (`bash -c <script> <name> <args…>`) somewhere: in a build container for real builds, on
 * the host in tests. Resolves with the exit code.
 */
export type ScriptRunner = (
  script: string,
  args: string[],
  options: { env: Record<string, string>; workdir: string; stdout: Writable; stderr: Writable; signal?: AbortSignal },
) => Promise<number>;

/** What DKMS knows about the kernel it builds for, as variables dkms.conf sees. */
export interface DkmsKernel {
  kernel: string;
  arch: string;
  parallelJobs: number;
  /** `/lib/modules/<kver>/build` unless told otherwise (tests point it at a fake tree). */
  kernelSourceDir?: string;
}

/** The variables DKMS sets before it sources dkms.conf. */
export function dkmsVariables(k: DkmsKernel): Record<string, string> {
  return {
    kernelver: k.kernel,
    arch: k.arch,
    kernel_source_dir: k.kernelSourceDir ?? `/lib/modules/${k.kernel}/build`,
    dkms_tree: DKMS_TREE,
    source_tree: SOURCE_TREE,
    install_tree: '/lib/modules',
    parallel_jobs: String(k.parallelJobs),
  };
}

export interface EvaluateInput extends DkmsKernel {
  /** dkms.conf as the user names it, for error messages. */
  confLabel: string;
  /** The source tree where the runner sees it (dkms.conf is evaluated with it as the working directory). */
  sourceDir: string;
  /** How long sourcing may take (default EVALUATION_TIMEOUT_MS). */
  timeoutMs?: number;
  /**
   * For a tree a package keeps as `/usr/src/<module>-<version>`: that directory's name. DKMS builds it as
   * `-m <module> -v <version>`, so the version comes from the name (when it starts with PACKAGE_NAME-).
   */
  packageDir?: string;
  /** `--dkms-conf-override`: sourced after dkms.conf as DKMS sources /etc/dkms/<module>.conf. */
  confOverride?: string;
  signal?: AbortSignal;
}

/**
 * How long sourcing dkms.conf may take. Real ones take a fraction of a second; one that loops forever is the
 * user's input error, found in a minute instead of after every target's build time limit.
 */
export const EVALUATION_TIMEOUT_MS = 60_000;

/**
 * Evaluates a dkms.conf the way `dkms add` + `dkms build` read it: eval-conf.sh sources it with bash and
 * prints what DKMS keeps; planFromConf applies DKMS's rules. A dkms.conf bash cannot source is the user's
 * input error (KFARM_CONFIG_INVALID), not a failed build.
 */
export async function evaluateDkmsConf(run: ScriptRunner, input: EvaluateInput): Promise<DkmsPlan> {
  const env = {
    ...dkmsVariables(input),
    ...(input.confOverride === undefined ? {} : { KFARM_CONF_OVERRIDE: input.confOverride }),
    ...(input.packageDir === undefined ? {} : { KFARM_PACKAGE_DIR: input.packageDir }),
  };
  const stdout = new BoundedBuffer(16 * 1024 * 1024, 'dkms.conf evaluation printed more than 16 MiB');
  const stderr = new TextTail();
  const script = (await runtimeScripts()).evalConf;
  const timeoutMs = input.timeoutMs ?? EVALUATION_TIMEOUT_MS;
  const limit = AbortSignal.timeout(timeoutMs);
  const signal = input.signal ? AbortSignal.any([input.signal, limit]) : limit;
  const code = await run(script, [`${input.sourceDir}/dkms.conf`], {
    env,
    workdir: input.sourceDir,
    stdout,
    stderr,
    signal,
  }).catch((error: unknown) => {
    if (!limit.aborted || input.signal?.aborted) throw error;
    const seconds = Math.round(timeoutMs / 1000);
    throw new KfarmError(
      'KFARM_CONFIG_INVALID',
      `${input.confLabel}: sourcing it did not finish within ${seconds} s (an endless loop?)`,
    );
  });
  if (code === 65)
    throw new KfarmError('KFARM_CONFIG_INVALID', `${input.confLabel}: ${stderr.lastLine() || 'bash syntax error'}`);
  if (code !== 0) {
    const why = stderr.lastLine() ? `: ${stderr.lastLine()}` : '';
    throw new KfarmError(
      'KFARM_CONFIG_INVALID',
      `${input.confLabel}: sourcing it with bash failed (exit ${code})${why}`,
    );
  }
  return planFromEvaluation(stdout.buffer(), input);
}

/** DKMS's rules applied to eval-conf.sh's records for one kernel. */
export function planFromEvaluation(records: Buffer, input: Omit<EvaluateInput, 'sourceDir'>): DkmsPlan {
  const parsed = parseConfRecords(records);
  const packageName = parsed.vars.get('PACKAGE_NAME')?.get(0) ?? '';
  const moduleVersion = versionFromDir(input.packageDir, packageName);
  const packageVersion = moduleVersion ?? parsed.vars.get('PACKAGE_VERSION')?.get(0) ?? '';
  return planFromConf(parsed, {
    file: input.confLabel,
    kernelver: input.kernel,
    kernelSourceDir: `/lib/modules/${input.kernel}/build`,
    buildDir: buildDirOf({ packageName, packageVersion }),
    parallelJobs: input.parallelJobs,
    ...(moduleVersion === undefined ? {} : { moduleVersion }),
  });
}

/** `<version>` of a `<module>-<version>` directory name, as DKMS's `-m`/`-v` split it. */
export function versionFromDir(dir: string | undefined, packageName: string): string | undefined {
  if (dir === undefined || packageName === '' || !dir.startsWith(`${packageName}-`)) return undefined;
  const version = dir.slice(packageName.length + 1);
  return version === '' ? undefined : version;
}

/** Collects a stream up to a limit; more is an error (the writer is untrusted code). */
class BoundedBuffer extends Writable {
  readonly #chunks: Buffer[] = [];
  #size = 0;

  constructor(
    readonly limit: number,
    readonly overflow: string,
  ) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error) => void): void {
    this.#size += chunk.length;
    if (this.#size > this.limit) return callback(new KfarmError('KFARM_CONFIG_INVALID', this.overflow));
    this.#chunks.push(chunk);
    callback();
  }

  buffer(): Buffer {
    return Buffer.concat(this.#chunks);
  }
}
