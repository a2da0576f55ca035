import { Writable } from 'node:stream';

/** Keeps a bounded tail of a text stream: enough for the one line that says why something failed. */
export class TextTail extends Writable {
  #text = '';
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.#text = (this.#text + chunk.toString('utf8')).slice(-8192);
    callback();
  }
  /** What is kept: the last 8 KiB. */
  text(): string {
    return this.#text;
  }

  lastLine(): string {
    return this.#text.trim().split('\n').pop()?.trim().slice(0, 500) ?? '';
  }
}
