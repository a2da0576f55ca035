import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { KfarmError, errorText } from '../model/errors.js';

/** make.log bytes read for diagnostics (the first errors are what matters; a runaway log is cut). */
export const MAX_LOG_BYTES = 64 * 1024 ** 2;
/** Bytes read from the end of a file for its tail. */
const TAIL_BYTES = 256 * 1024;

/** The first `max` bytes of a file as UTF-8, or undefined when it cannot be read. */
export async function readCapped(path: string, max: number): Promise<string | undefined> {
  let handle;
  try {
    handle = await open(path, 'r');
    const { size } = await handle.stat();
    const length = Math.min(size, max);
    const buffer = Buffer.alloc(length);
    let offset = 0;
    while (offset < length) {
      const { bytesRead } = await handle.read(buffer, offset, length - offset, offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    return buffer.toString('utf8', 0, offset);
  } catch {
    return undefined;
  } finally {
    await handle?.close();
  }
}

/** The last `lines` lines of a file, reading at most its last 256 KiB; '' when it cannot be read. */
export async function tailFile(path: string, lines: number, maxBytes = TAIL_BYTES): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
    const { size } = await handle.stat();
    const start = Math.max(0, size - maxBytes);
    const buffer = Buffer.alloc(size - start);
    let offset = 0;
    while (offset < buffer.length) {
      const { bytesRead } = await handle.read(buffer, offset, buffer.length - offset, start + offset);
      if (bytesRead === 0) break;
      offset += bytesRead;
    }
    let text = buffer.toString('utf8', 0, offset);
    // Reading from the middle: the first line is partial (and may start mid-character).
    if (start > 0) text = text.slice(text.indexOf('\n') + 1);
    return lastLines(text, lines);
  } catch {
    return '';
  } finally {
    await handle?.close();
  }
}

/** The last `count` lines of `text` (a trailing newline does not count as an empty line). */
export function lastLines(text: string, count: number): string {
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  let index = body.length;
  for (let i = 0; i < count; i++) {
    index = body.lastIndexOf('\n', index - 1);
    if (index === -1) return body;
  }
  return body.slice(index + 1);
}

/**
 * A file that came out of a build, read without following links or blocking (a FIFO): a regular file of at
 * most `limit` bytes, else KFARM_OUTPUT_UNSAFE naming it.
 */
export async function readRegularFile(path: string, limit: number): Promise<Buffer> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    throw new KfarmError(
      'KFARM_OUTPUT_UNSAFE',
      `${path}: cannot open it as a regular file (${(error as NodeJS.ErrnoException).code ?? errorText(error)})`,
      { cause: error },
    );
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new KfarmError('KFARM_OUTPUT_UNSAFE', `${path}: not a regular file`);
    if (info.size > limit)
      throw new KfarmError('KFARM_OUTPUT_UNSAFE', `${path}: ${info.size} bytes, over the ${limit}-byte limit`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** The first `bytes` bytes of a file (fewer when it is shorter). */
export async function readHead(path: string, bytes: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
