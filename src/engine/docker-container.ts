import type Docker from 'dockerode';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { EngineContainer, ExecOptions } from './engine.js';
import { EngineTimeouts } from './engine.js';
import { engineCall, engineFailure, isNotFound } from './engine-errors.js';

/** A container of a Docker-API engine (Docker, Podman's compatible socket). */
export class DockerContainer implements EngineContainer {
  #removal: Promise<void> | undefined;

  constructor(
    readonly docker: Docker,
    readonly handle: Docker.Container,
    readonly endpoint: string,
  ) {}

  get id(): string {
    return this.handle.id;
  }

  async exec(cmd: string[], options: ExecOptions = {}): Promise<number> {
    const { signal } = options;
    const exec = await this.#call(
      'exec create',
      (abortSignal) =>
        this.handle.exec({
          Cmd: cmd,
          Env: Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`),
          WorkingDir: options.workdir,
          User: options.user,
          AttachStdin: options.stdin !== undefined,
          AttachStdout: true,
          AttachStderr: true,
          abortSignal,
        }),
      signal,
    );
    await this.#stream(exec, options);
    signal?.throwIfAborted();
    const info = await this.#call('exec inspect', (abortSignal) => exec.inspect({ abortSignal }), signal);
    return info.ExitCode ?? -1;
  }

  /** Streams the exec's output into the caller's sinks until it ends (or the caller aborts). */
  async #stream(exec: Docker.Exec, options: ExecOptions): Promise<void> {
    const { signal } = options;
    // The answer is the output stream itself: only the caller's signal (and the run's heartbeat) bound it.
    const stream = await this.#call(
      'exec start',
      (abortSignal) => exec.start({ hijack: true, stdin: options.stdin !== undefined, abortSignal }),
      signal,
      false,
    );
    if (options.stdin) feed(options.stdin, stream);
    this.docker.modem.demuxStream(
      stream,
      options.stdout ?? new PassThrough().resume(),
      options.stderr ?? new PassThrough().resume(),
    );
    const onAbort = () => stream.destroy();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await finished(stream).catch((error: unknown) => {
        if (!signal?.aborted) throw engineFailure(this.endpoint, 'exec output', error);
      });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * The engine's State.OOMKilled only covers the main process, and builds run through exec; the container's
   * own memory cgroup counts every kill (cgroup v2: memory.events, v1: memory.oom_control). When the memory
   * is full of what the build wrote to its in-memory mounts, the OOM killer may take the container's main
   * process (the container stops), or the check cannot even start (126, runc's "possibly OOM-killed") or is
   * killed itself (137): each of those says the memory ran out.
   */
  async oomKills(): Promise<number> {
    const before = (await this.#call('inspect', (abortSignal) => this.handle.inspect({ abortSignal }))).State;
    if (!before?.Running) return before?.OOMKilled || before?.ExitCode === 137 ? 1 : 0;
    const collected: Buffer[] = [];
    const sink = new PassThrough();
    sink.on('data', (chunk: Buffer) => collected.push(chunk));
    const read = 'cat /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null';
    const code = await this.exec(['sh', '-c', read], { stdout: sink }).catch(() => 126);
    if (code === 137 || code === 126) return 1;
    const match = /^oom_kill (\d+)$/m.exec(Buffer.concat(collected).toString());
    return Math.max(Number(match?.[1] ?? 0), before.OOMKilled ? 1 : 0);
  }

  async putArchive(tar: Readable | Buffer, path: string, signal?: AbortSignal): Promise<void> {
    // An upload lasts as long as the tarball: bounded by the caller's signal and the run's heartbeat, not a timer.
    await engineCall(
      this.endpoint,
      'copying files in',
      (abortSignal) => this.handle.putArchive(tar, { path, abortSignal }),
      {
        ...(signal ? { signal } : {}),
      },
    );
  }

  async getArchive(path: string, signal?: AbortSignal): Promise<Readable> {
    const stream = await this.#call(
      'copying files out',
      (abortSignal) => this.handle.getArchive({ path, abortSignal }),
      signal,
      false,
    );
    return stream as unknown as Readable;
  }

  remove(): Promise<void> {
    this.#removal ??= engineCall(
      this.endpoint,
      'removing a container',
      (abortSignal) => this.handle.remove({ force: true, v: true, abortSignal }),
      { timeoutMs: EngineTimeouts.cleanup },
    ).catch((error: unknown) => {
      if (!isNotFound((error as { cause?: unknown }).cause)) throw error;
    });
    return this.#removal;
  }

  /**
   * One bounded request. `bounded: false` is for requests that answer with a stream: a timer must not cut
   * the stream, so only the caller's signal applies.
   */
  #call<T>(
    what: string,
    request: (signal: AbortSignal) => Promise<T>,
    signal?: AbortSignal,
    bounded = true,
  ): Promise<T> {
    return engineCall(this.endpoint, what, request, {
      ...(bounded ? { timeoutMs: EngineTimeouts.call } : {}),
      ...(signal ? { signal } : {}),
    });
  }
}

/**
 * Sends `input` as the exec's stdin, then half-closes the connection so the process sees end of file; its
 * output keeps coming back on the same connection.
 */
function feed(input: Readable, stream: NodeJS.ReadWriteStream): void {
  const socket = stream as unknown as Writable;
  input.on('error', (error) => socket.destroy(error));
  input.pipe(socket, { end: false });
  input.on('end', () => socket.end());
}
