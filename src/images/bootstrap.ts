import type { WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { PassThrough, type Readable } from 'node:stream';
import { shellQuote } from '../util/shell.js';
import { execa } from 'execa';
import { KfarmError, errorText } from '../model/errors.js';
import type { Engine } from '../engine/index.js';
import { reasonIn, withPrepareLog } from './prepare.js';
import { archiveWriter } from './rootfs-archive.js';

export interface BootstrapSpec {
  release: string;
  ref: string;
  packages: string[];
  /** `deb <archive> <suite> main` lines for the image's sources.list. */
  sources: string[];
  labels: Record<string, string>;
  logPath: string;
  /**
   * The release's share of the package cache: apt's downloads are synced in before and out after, so a
   * machine whose cache dir was restored bootstraps without downloading any package (apt still checks
   * every file against the signed index, and fetches what does not match).
   */
  packageDir?: string;
  /** Also keep the root filesystem here (zstd), for `restoreRootfs` on a machine with no such image yet. */
  archivePath?: string;
  /** mmdebstrap's stage (`downloading packages with apt`, …) as it reports it. */
  onStage?: (stage: string) => void;
  signal?: AbortSignal;
}

/**
 * A release's base image from Debian's archive, no registry: `mmdebstrap … -` streams a root filesystem
 * tarball straight into the engine's image import. It is imported under a temporary name and tagged only
 * after mmdebstrap succeeded, so a truncated root filesystem never becomes an image a later run reuses.
 */
export async function bootstrapImage(engine: Engine, spec: BootstrapSpec): Promise<void> {
  const partial = `${spec.ref}-partial-${engine.session.id}`;
  await withPrepareLog(spec.logPath, async (log) => {
    try {
      await importRootfs(engine, spec, partial, log);
      await engine.tagImage(partial, spec.ref);
    } finally {
      // Untagging the temporary name keeps the image under its real one (or drops a partial import).
      await engine.removeImage(partial).catch(() => undefined);
    }
  });
}

async function importRootfs(engine: Engine, spec: BootstrapSpec, partial: string, log: WriteStream): Promise<void> {
  const args = [
    '--variant=apt',
    `--include=${spec.packages.join(',')}`,
    '--aptopt=Acquire::Retries "3"',
    // As discovery does: signatures are checked, Valid-Until is not, so a snapshot or a mirror that is behind
    // (whose sid/forky Release has expired) still bootstraps. The option stays in the image for its apt layers.
    '--aptopt=Acquire::Check-Valid-Until "false"',
    // The root file system is a temporary directory thrown away on any failure: dpkg's fsync per file buys nothing.
    '--dpkgopt=force-unsafe-io',
    ...(spec.packageDir ? packageCacheHooks(spec.packageDir) : []),
  ];
  // Opened before mmdebstrap starts, so it sees the root filesystem from its first byte.
  const archive = spec.archivePath ? await archiveWriter(spec.archivePath) : undefined;
  const mmdebstrap = execa('mmdebstrap', [...args, spec.release, '-', ...spec.sources], {
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    ...(spec.signal ? { cancelSignal: spec.signal } : {}),
    forceKillAfterDelay: 2000,
  });
  mmdebstrap.stderr.pipe(log, { end: false });
  if (spec.onStage) reportStages(mmdebstrap.stderr, spec.onStage);
  const rootfs = new PassThrough();
  mmdebstrap.stdout.pipe(rootfs);
  if (archive) mmdebstrap.stdout.pipe(archive.input);
  // An import that fails (the engine refuses, or goes away) stops mmdebstrap: nobody would read its output.
  let importFailure: unknown;
  const imported = engine.importImage(rootfs, partial, spec.labels, spec.signal).catch((error: unknown) => {
    importFailure = error;
    mmdebstrap.kill();
    rootfs.destroy();
  });
  try {
    await mmdebstrap;
  } catch (cause) {
    rootfs.destroy();
    await archive?.drop();
    await imported;
    await engine.removeImage(partial, { force: true }).catch(() => undefined);
    if (importFailure !== undefined) throw importError(spec.ref, importFailure);
    const why = `mmdebstrap ${describeExit(cause)} (log: ${spec.logPath})${await reasonIn(spec.logPath)}`;
    throw new KfarmError('KFARM_IMAGE_FAILED', `preparing ${spec.ref} failed: ${why}`, { cause });
  }
  await imported;
  if (importFailure !== undefined) {
    await archive?.drop();
    throw importError(spec.ref, importFailure);
  }
  await archive?.keep();
}

/** mmdebstrap's own recipe for a package cache without a proxy (its manual, EXAMPLES). */
function packageCacheHooks(dir: string): string[] {
  const quoted = shellQuote(dir);
  return [
    '--skip=essential/unlink',
    `--setup-hook=mkdir -p ${quoted} "$1"/var/cache/apt/archives/`,
    `--setup-hook=sync-in ${quoted} /var/cache/apt/archives/`,
    `--customize-hook=sync-out /var/cache/apt/archives ${quoted}`,
  ];
}

/** The stages a person waiting wants to see (mmdebstrap says much more, all of it in the log). */
const STAGES =
  /^(running apt-get update|downloading packages|extracting archives|installing (essential|remaining) packages|creating tarball|success in)/;

/** `I: downloading packages with apt...` → `downloading packages with apt`. */
function reportStages(stderr: Readable, onStage: (stage: string) => void): void {
  const lines = createInterface({ input: stderr, crlfDelay: Infinity });
  lines.on('line', (line) => {
    const stage = /^I: (.*?)\.*$/.exec(line)?.[1];
    if (stage && STAGES.test(stage)) onStage(stage);
  });
}

function importError(ref: string, cause: unknown): KfarmError {
  if (cause instanceof KfarmError && cause.code === 'KFARM_ENGINE_UNAVAILABLE') return cause;
  return new KfarmError('KFARM_IMAGE_FAILED', `importing ${ref} into the engine failed: ${errorText(cause)}`, {
    cause,
  });
}

function describeExit(error: unknown): string {
  const e = error as { exitCode?: number; signal?: string; isCanceled?: boolean };
  if (e.isCanceled) return 'was cancelled';
  if (e.signal) return `was killed by ${e.signal}`;
  return `exited ${e.exitCode ?? '?'}`;
}
