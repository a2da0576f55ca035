import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { KfarmError } from '../model/errors.js';
import { Label, type Engine } from '../engine/index.js';

/** Where an image's preparation log goes: one file per image ref under the cache's log directory. */
export function prepareLogPath(logDir: string, ref: string): string {
  return join(logDir, `${ref.replace(/[^A-Za-z0-9_.-]/g, '_')}.log`);
}

/** Opens a preparation log (replacing an older one) and closes it, flushed, whatever `work` does. */
export async function withPrepareLog<T>(logPath: string, work: (log: WriteStream) => Promise<T>): Promise<T> {
  await mkdir(join(logPath, '..'), { recursive: true });
  const log = createWriteStream(logPath);
  try {
    return await work(log);
  } finally {
    log.end();
    await finished(log).catch(() => undefined);
  }
}

/** The last line of a log that looks like the reason (apt's `E:`, an error), for a one-line message. */
export async function reasonIn(logPath: string, pattern = /^(E:|error|kfarm:)/i): Promise<string> {
  const text = await readFile(logPath, 'utf8').catch(() => '');
  const line = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => pattern.test(l))
    .pop();
  return line ? `: ${line}` : '';
}

export interface LayerSpec {
  base: string;
  ref: string;
  /** A bash script run in a container of `base`, then committed as `ref`. */
  script: string;
  args: string[];
  /** Only a step that downloads with apt gets a network; one fed its packages on stdin does not. */
  network: 'none' | 'bridge';
  /** The script's standard input. */
  stdin?: () => Readable;
  labels: Record<string, string>;
  logPath: string;
  /** What the step does, for the error message, e.g. `installing linux-headers-… from bookworm-security`. */
  what: string;
  signal?: AbortSignal;
}

/**
 * Adds one layer to an image: a container of the base runs a script (with a network only when it uses apt,
 * the only time kfarm gives a container one), and is committed with labels when the script succeeds. The
 * container is removed in every case (after a success in the background: `engine.settle` waits for it); a
 * failure names the log, which stays under the cache directory and carries the script's exit code.
 */
export async function commitLayer(engine: Engine, spec: LayerSpec): Promise<void> {
  await withPrepareLog(spec.logPath, async (log) => {
    const container = await engine.start(
      {
        image: spec.base,
        cmd: ['sleep', '3600'],
        network: spec.network,
        hardened: false,
        labels: { [Label.role]: 'prepare', [Label.target]: spec.ref },
      },
      spec.signal,
    );
    try {
      const code = await container.exec(['bash', '-c', spec.script, 'prepare', ...spec.args], {
        ...(spec.stdin ? { stdin: spec.stdin() } : {}),
        stdout: log,
        stderr: log,
        ...(spec.signal ? { signal: spec.signal } : {}),
      });
      if (code !== 0) throw await layerFailed(spec, code, log);
      await engine.commit(container, spec.ref, spec.labels);
    } catch (error) {
      await container.remove().catch(() => undefined);
      throw error;
    }
    // Removing a container whose layer holds 15,000 header files takes seconds: the image is ready before that,
    // so the removal goes on in the background (the run waits for it before it ends, and sweeps what it left).
    engine.removeLater(container);
  });
}

async function layerFailed(spec: LayerSpec, code: number, log: WriteStream): Promise<KfarmError> {
  log.end();
  await finished(log).catch(() => undefined);
  const reason = await reasonIn(spec.logPath);
  return new KfarmError(
    'KFARM_IMAGE_FAILED',
    `preparing ${spec.ref} failed: ${spec.what} exited ${code} (log: ${spec.logPath})${reason}`,
  );
}
