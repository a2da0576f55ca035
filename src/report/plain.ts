import type { FarmEvents } from '../model/events.js';
import type { TargetResult } from '../model/result.js';
import { printable } from '../util/shell.js';

/** How often plain mode says what a preparation is still doing, so a CI log never looks stuck. */
export const PLAIN_HEARTBEAT_MS = 10_000;

/**
 * Timestamped progress lines for logs and CI (no TTY tricks). While images are prepared, a preparation that has
 * said nothing for PLAIN_HEARTBEAT_MS says again what it is doing and for how long (a bootstrap's dpkg stage
 * can take a minute without a line of its own).
 */
export function plainProgress(write: (line: string) => void, started = Date.now()): FarmEvents {
  const stamp = () => {
    const s = Math.floor((Date.now() - started) / 1000);
    return `[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}]`;
  };
  const heartbeat = new Heartbeat((ref, doing, ms) =>
    write(`${stamp()} image ${ref}: ${doing} (${Math.round(ms / 1000)} s so far)`),
  );
  return {
    onPrepare: (ref, what) => {
      heartbeat.start(ref, what);
      write(`${stamp()} preparing image ${ref} (${what})`);
    },
    onProgress: (ref, doing) => {
      heartbeat.said(ref, doing);
      write(`${stamp()} image ${ref}: ${doing}`);
    },
    onReady: (ref, ms) => {
      heartbeat.end(ref);
      write(`${stamp()} image ${ref} ready in ${(ms / 1000).toFixed(1)} s`);
    },
    onFailed: (ref) => heartbeat.end(ref),
    onTargetStart: (target) => write(`${stamp()} ${target.id}: queued`),
    onTargetPhase: (target, phase) => {
      if (phase === 'build') write(`${stamp()} ${target.id}: building`);
    },
    onTargetDone: (result) => write(`${stamp()} ${result.id}: ${describeResult(result)}`),
    onWarning: (message) => write(`${stamp()} warning: ${message}`),
  };
}

export function describeResult(result: TargetResult): string {
  return printable(describe(result));
}

function describe(result: TargetResult): string {
  const seconds = `${(result.durationMs / 1000).toFixed(1)} s`;
  switch (result.status) {
    case 'built':
    case 'cached':
      return `${result.status} in ${seconds}`;
    case 'skipped':
      return `skipped: ${result.error ?? 'excluded by dkms.conf'}`;
    case 'expected-failure':
      return `expected failure (${result.expected ?? 'known-failing'}): ${why(result)}`;
    default:
      return `${result.status} after ${seconds}: ${why(result)}${result.log ? ` (log: ${result.log})` : ''}`;
  }
}

/** The first compiler error when there is one (what a developer needs), else the one-line reason. */
function why(result: TargetResult): string {
  const e = result.firstError;
  if (!e) return result.error ?? '';
  const where = e.file ? `${e.file}${e.line ? `:${e.line}` : ''}${e.column ? `:${e.column}` : ''}: ` : '';
  return `${where}${e.message}`;
}

/** Repeats the last word of each preparation that has been quiet for PLAIN_HEARTBEAT_MS. */
class Heartbeat {
  readonly #active = new Map<string, { doing: string; since: number; said: number }>();
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly repeat: (ref: string, doing: string, ms: number) => void) {}

  start(ref: string, doing: string): void {
    const now = Date.now();
    this.#active.set(ref, { doing, since: now, said: now });
    // unref: progress never keeps the process alive.
    this.#timer ??= setInterval(() => this.#tick(), 1000).unref();
  }

  said(ref: string, doing: string): void {
    const entry = this.#active.get(ref);
    if (entry) Object.assign(entry, { doing, said: Date.now() });
  }

  end(ref: string): void {
    this.#active.delete(ref);
    if (this.#active.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #tick(): void {
    const now = Date.now();
    for (const [ref, entry] of this.#active) {
      if (now - entry.said < PLAIN_HEARTBEAT_MS) continue;
      entry.said = now;
      this.repeat(ref, entry.doing, now - entry.since);
    }
  }
}
