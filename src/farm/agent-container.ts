import { once } from 'node:events';
import { PassThrough, Writable, type Readable } from 'node:stream';
import type { EngineContainer, ExecOptions } from '../engine/index.js';
import { KfarmError } from '../model/errors.js';
import { TextTail } from '../util/text-tail.js';

interface Command {
  resolve: (code: number) => void;
  reject: (error: unknown) => void;
  stdout: Writable | undefined;
  stderr: Writable | undefined;
  /** Aborted by its caller: what it still prints is dropped. */
  abandoned: boolean;
}

/** Exit codes of an agent that was killed (by the OOM killer, or with its container), not one that failed. */
const KILLED = new Set([-1, 126, 137]);

/**
 * A container whose commands run through kfarm's agent (images/runtime/agent.pl), started with one engine
 * `exec`: each further command is a frame on that exec's stream, not an engine call. An engine exec costs
 * ~0.16 host CPU-s (dockerd, containerd, runc); a target's five steps through the agent cost none of it.
 *
 * The same contract as the engine's exec: a command resolves with its exit code; an abort by its signal
 * kills the command's process group and rejects with the signal's reason. When the agent is gone, what was
 * running ends as killed (137: the agent dies with its container, or first to the OOM killer) unless the
 * engine itself went away, and later commands go to the engine's exec again.
 */
export class AgentContainer implements EngineContainer {
  readonly #requests = new PassThrough();
  readonly #commands = new Map<number, Command>();
  readonly #agentErrors = new TextTail();
  #nextId = 1;
  #gone = false;

  constructor(
    readonly inner: EngineContainer,
    script: string,
  ) {
    const frames = new FrameReader((type, id, payload) => this.#onFrame(type, id, payload));
    inner
      .exec(['perl', '-e', script, 'kfarm-agent'], { stdin: this.#requests, stdout: frames, stderr: this.#agentErrors })
      .then(
        (code) => this.#ended(code, undefined),
        (error: unknown) => this.#ended(undefined, error),
      );
  }

  get id(): string {
    return this.inner.id;
  }

  exec(cmd: string[], options: ExecOptions = {}): Promise<number> {
    if (this.#gone || options.user !== undefined) return this.inner.exec(cmd, options);
    const { signal } = options;
    signal?.throwIfAborted();
    const id = this.#nextId++;
    const done = new Promise<number>((resolve, reject) => {
      this.#commands.set(id, { resolve, reject, stdout: options.stdout, stderr: options.stderr, abandoned: false });
    });
    const env = Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`);
    this.#send('S', id, Buffer.from([options.workdir ?? '', String(cmd.length), ...cmd, ...env].join('\0')));
    if (options.stdin) void this.#feed(id, options.stdin);
    else this.#send('E', id);
    if (!signal) return done;
    return this.#abortable(id, done, signal);
  }

  oomKills(): Promise<number> {
    return this.inner.oomKills();
  }

  putArchive(tar: Readable | Buffer, path: string, signal?: AbortSignal): Promise<void> {
    return this.inner.putArchive(tar, path, signal);
  }

  getArchive(path: string, signal?: AbortSignal): Promise<Readable> {
    return this.inner.getArchive(path, signal);
  }

  /** Ends the agent (its commands are killed), then removes the container. */
  remove(): Promise<void> {
    this.#requests.end();
    return this.inner.remove();
  }

  #abortable(id: number, done: Promise<number>, signal: AbortSignal): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const onAbort = () => {
        const command = this.#commands.get(id);
        if (command) command.abandoned = true;
        if (!this.#gone) this.#send('K', id);
        // The same as the engine's exec: an abort rethrows the signal's reason, whatever it is.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      done.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /** The command's stdin as frames, at the pace the stream to the agent takes them. */
  async #feed(id: number, stdin: Readable): Promise<void> {
    try {
      for await (const chunk of stdin) {
        if (this.#gone || !this.#commands.has(id)) return;
        if (!this.#send('I', id, Buffer.from(chunk as Buffer))) await once(this.#requests, 'drain');
      }
      this.#send('E', id);
    } catch (error) {
      this.#send('K', id);
      this.#commands.get(id)?.reject(error);
    }
  }

  #send(type: 'S' | 'I' | 'E' | 'K', id: number, payload: Buffer = Buffer.alloc(0)): boolean {
    if (this.#gone) return true;
    const header = Buffer.alloc(9);
    header.write(type, 0, 'latin1');
    header.writeUInt32BE(id, 1);
    header.writeUInt32BE(payload.length, 5);
    return this.#requests.write(Buffer.concat([header, payload]));
  }

  #onFrame(type: string, id: number, payload: Buffer): void {
    const command = this.#commands.get(id);
    if (!command) return;
    if (type === 'X') {
      this.#commands.delete(id);
      command.resolve(Number(payload.toString('latin1')));
    } else if (!command.abandoned) {
      (type === 'O' ? command.stdout : command.stderr)?.write(payload);
    }
  }

  #ended(code: number | undefined, error: unknown): void {
    this.#gone = true;
    const failure =
      error ??
      (code !== undefined && KILLED.has(code)
        ? undefined
        : new KfarmError(
            'KFARM_ENGINE_ERROR',
            `kfarm's agent in container ${this.id.slice(0, 12)} ended (exit ${code}): ${this.#agentErrors.lastLine()}`,
          ));
    for (const command of this.#commands.values()) {
      if (failure === undefined) command.resolve(137);
      else command.reject(failure);
    }
    this.#commands.clear();
  }
}

/** Splits the agent's stdout into frames: type (1 byte), id (u32 BE), length (u32 BE), payload. */
class FrameReader extends Writable {
  #buffer: Buffer = Buffer.alloc(0);

  constructor(readonly onFrame: (type: string, id: number, payload: Buffer) => void) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    while (this.#buffer.length >= 9) {
      const length = this.#buffer.readUInt32BE(5);
      if (this.#buffer.length < 9 + length) break;
      const type = this.#buffer.toString('latin1', 0, 1);
      const id = this.#buffer.readUInt32BE(1);
      this.onFrame(type, id, this.#buffer.subarray(9, 9 + length));
      this.#buffer = this.#buffer.subarray(9 + length);
    }
    callback();
  }
}
