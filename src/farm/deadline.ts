/** A time limit that can be paused while the target waits for a build slot. */
export class Deadline {
  readonly #controller = new AbortController();
  #left: number;
  #since = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(readonly ms: number) {
    this.#left = ms;
    this.resume();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get expired(): boolean {
    return this.#controller.signal.aborted;
  }

  pause(): void {
    if (!this.#timer) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#left -= Date.now() - this.#since;
  }

  resume(): void {
    if (this.#timer || this.#stopped || this.#controller.signal.aborted) return;
    this.#since = Date.now();
    // Unreferenced like AbortSignal.timeout: a pending limit never keeps the process alive.
    const expire = () => this.#controller.abort(new DOMException('the time limit passed', 'TimeoutError'));
    this.#timer = setTimeout(expire, Math.max(0, this.#left)).unref();
  }

  stop(): void {
    this.#stopped = true;
    this.pause();
  }
}
