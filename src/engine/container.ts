import type Docker from 'dockerode';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';

export interface ExecOptions {
  env?: Record<string, string>;
  workdir?: string;
  user?: string;
  stdout?: Writable;
  stderr?: Writable;
  signal?: AbortSignal;
}

/**
 * A container kfarm created and owns. Removal is idempotent and never uses the caller's (possibly aborted)
 * signal, so `finally { await c.remove() }` always cleans up.
 */
export class EngineContainer {
  #removed = false;

  constructor(
    readonly docker: Docker,
    readonly handle: Docker.Container,
  ) {}

  get id(): string {
    return this.handle.id;
  }

  /** Runs a command in the container; resolves with its exit code (read from exec inspect, not the stream). */
  async exec(cmd: string[], options: ExecOptions = {}): Promise<number> {
    const exec = await this.handle.exec({
      Cmd: cmd,
      Env: Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`),
      WorkingDir: options.workdir,
      User: options.user,
      AttachStdout: true,
      AttachStderr: true,
    });
    const stream = await exec.start({ hijack: true, stdin: false, abortSignal: options.signal });
    const out = options.stdout ?? new PassThrough().resume();
    const err = options.stderr ?? new PassThrough().resume();
    this.docker.modem.demuxStream(stream, out, err);
    const onAbort = () => stream.destroy();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await finished(stream).catch((error: unknown) => {
        if (!options.signal?.aborted) throw error;
      });
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    options.signal?.throwIfAborted();
    const info = await exec.inspect();
    return info.ExitCode ?? -1;
  }

  /**
   * How many processes the kernel OOM-killed in this container. The engine's State.OOMKilled only covers
   * the main process, and builds run through exec; the container's own memory cgroup counts them all
   * (cgroup v2: memory.events, v1: memory.oom_control).
   */
  async oomKills(): Promise<number> {
    const collected: Buffer[] = [];
    const sink = new PassThrough();
    sink.on('data', (chunk: Buffer) => collected.push(chunk));
    await this.exec(
      ['sh', '-c', 'cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null'],
      { stdout: sink },
    );
    const match = /^oom_kill (\d+)$/m.exec(Buffer.concat(collected).toString());
    const state = (await this.inspect()).State;
    return Math.max(Number(match?.[1] ?? 0), state?.OOMKilled ? 1 : 0);
  }

  async putArchive(tar: Readable | Buffer, path: string, signal?: AbortSignal): Promise<void> {
    await this.handle.putArchive(tar, { path, abortSignal: signal });
  }

  async getArchive(path: string, signal?: AbortSignal): Promise<NodeJS.ReadableStream> {
    return this.handle.getArchive({ path, abortSignal: signal });
  }

  async inspect(): Promise<Docker.ContainerInspectInfo> {
    return this.handle.inspect();
  }

  async remove(): Promise<void> {
    if (this.#removed) return;
    this.#removed = true;
    try {
      await this.handle.remove({ force: true, v: true });
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
}

export function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { statusCode?: number }).statusCode === 404;
}
