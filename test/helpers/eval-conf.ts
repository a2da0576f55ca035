import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { execa } from 'execa';
import { evaluateDkmsConf, type ScriptRunner } from '../../src/dkms/evaluate.js';
import type { DkmsPlan } from '../../src/dkms/plan.js';
import { runtimeScripts } from '../../src/dkms/runtime.js';

export interface EvalInput {
  conf: string;
  kernelver?: string;
  arch?: string;
  /** Files of the module source tree besides dkms.conf. */
  files?: Record<string, string>;
  /** The fake kernel's .config (and include/config/auto.conf). */
  kconfig?: string;
  module?: string;
  moduleVersion?: string;
  /** --dkms-conf-override text. */
  override?: string;
  /** The tree's directory name, for a tree a package keeps in /usr/src. */
  packageDir?: string;
}

/**
 * Evaluates a dkms.conf written to a temp dir with kfarm's own evaluation (evaluateDkmsConf, the code builds
 * run), its script run by the host's real bash instead of a container's, against a fake kernel tree.
 */
export async function evaluateConf(input: EvalInput): Promise<DkmsPlan> {
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-conf-'));
  const src = join(dir, 'src');
  const kernel = input.kernelver ?? '6.1.0-47-amd64';
  const ksrc = join(dir, 'lib/modules', kernel, 'build');
  await mkdir(join(ksrc, 'include/config'), { recursive: true });
  await mkdir(src, { recursive: true });
  if (input.kconfig !== undefined) {
    await writeFile(join(ksrc, '.config'), input.kconfig);
    await writeFile(join(ksrc, 'include/config/auto.conf'), input.kconfig);
  }
  await writeFile(join(src, 'dkms.conf'), input.conf);
  for (const [name, text] of Object.entries(input.files ?? {})) await writeFile(join(src, name), text);
  // Without them the script learns them from a first reading, as kfarm's builds do.
  const named: Record<string, string> =
    input.module === undefined ? {} : { module: input.module, module_version: input.moduleVersion ?? '' };
  return evaluateDkmsConf(hostBash(named), {
    confLabel: 'dkms.conf',
    sourceDir: src,
    kernel,
    arch: input.arch ?? 'x86_64',
    parallelJobs: 4,
    kernelSourceDir: ksrc,
    ...(input.override === undefined ? {} : { confOverride: input.override }),
    ...(input.packageDir === undefined ? {} : { packageDir: input.packageDir }),
  });
}

/** The records kfarm's eval-conf.sh prints for the dkms.conf in `sourceDir`, run by the host's bash. */
export async function kfarmRecords(sourceDir: string, env: Record<string, string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const stdout = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk);
      done();
    },
  });
  const script = (await runtimeScripts()).evalConf;
  const code = await hostBash({})(script, [join(sourceDir, 'dkms.conf')], {
    env,
    workdir: sourceDir,
    stdout,
    stderr: new Writable({ write: (_chunk, _encoding, done) => done() }),
  });
  if (code !== 0) throw new Error(`eval-conf.sh exited ${code} for ${sourceDir}`);
  return Buffer.concat(chunks);
}

/** Runs the script with the host's bash, in a clean environment (only what kfarm sets, plus `extra`). */
function hostBash(extra: Record<string, string>): ScriptRunner {
  return async (script, args, options) => {
    const run = await execa('bash', ['-c', script, 'eval-conf', ...args], {
      cwd: options.workdir,
      env: { ...options.env, ...extra, PATH: process.env['PATH'] ?? '/usr/bin:/bin' },
      extendEnv: false,
      encoding: 'buffer',
      reject: false,
    });
    options.stdout.write(Buffer.from(run.stdout));
    options.stderr.write(Buffer.from(run.stderr));
    return run.exitCode ?? -1;
  };
}
