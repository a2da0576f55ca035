import type { FarmEvents } from '../model/events.js';
import type { TargetResult } from '../model/result.js';
import { printable } from '../util/shell.js';

/** Timestamped progress lines for logs and CI (no TTY tricks). */
export function plainProgress(write: (line: string) => void, started = Date.now()): FarmEvents {
  const stamp = () => {
    const s = Math.floor((Date.now() - started) / 1000);
    return `[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}]`;
  };
  return {
    onPrepare: (ref, what) => write(`${stamp()} preparing image ${ref} (${what})`),
    onProgress: (ref, doing) => write(`${stamp()} image ${ref}: ${doing}`),
    onReady: (ref, ms) => write(`${stamp()} image ${ref} ready in ${(ms / 1000).toFixed(1)} s`),
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
