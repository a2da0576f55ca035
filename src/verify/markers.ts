import type { VerifyResult } from '../model/result.js';

/** What the console of one boot says (see init-script.ts for the markers). */
export interface ConsoleVerdict {
  status: VerifyResult['status'];
  /** The kernel's own line on failure (timestamp removed), or kfarm's one-line account when there is none. */
  reason?: string;
  /** Modules that reached /proc/modules, in load order, with their taint (`(OE)`, `-`). */
  loaded: Array<{ name: string; source: string; taint: string }>;
}

export interface BootFacts {
  timedOut: boolean;
  exitCode: number | undefined;
  timeoutMs?: number;
  /** QEMU's stderr: the reason when the guest never produced output (bad -kernel file…). */
  stderr?: string;
}

interface Section {
  name: string;
  /** Lines between `KFARM: insmod|rmmod <name>` and its result: insmod's own output and the kmsg section. */
  lines: string[];
}

/**
 * Turns a console log into a verdict:
 * - killed at the time limit → `timeout`;
 * - no `KFARM: init` → `boot-failed` (the kernel panicked or stopped before /init), reason its panic line;
 * - a `load-failed` marker, or the guest dying between `insmod`/`rmmod` and its result → `load-failed`, reason
 *   the kernel's line about it (`kf_x: Unknown symbol foo (err -2)`, `disagrees about version of symbol`, a
 *   signature rejection, an Oops…), else insmod's own message;
 * - every planned module `loaded` → `loaded` (even if the guest went away before `KFARM: done`).
 */
export function parseConsole(text: string, boot: BootFacts): ConsoleVerdict {
  const lines = text.split('\n');
  const { init, done, plan, loaded, failed, open, last } = scanConsole(lines);

  if (boot.timedOut) {
    const limit = boot.timeoutMs !== undefined ? ` within ${Math.round(boot.timeoutMs / 1000)} s` : '';
    const where = open
      ? `, stuck in ${open.kind} ${open.section.name}`
      : last
        ? `, last: ${last}`
        : init
          ? ''
          : ', /init never ran';
    return { status: 'timeout', reason: `no KFARM: done${limit}${where}`, loaded };
  }
  if (!init) return { status: 'boot-failed', reason: bootFailure(lines, boot), loaded };
  if (failed) {
    const reason = kernelReason(failed.name, failed.section.lines) ?? `insmod ${failed.name} failed (${failed.rc})`;
    return { status: 'load-failed', reason, loaded };
  }
  if (open && !done) {
    const crash = crashLine(lines.slice(open.at));
    const what = `${open.kind === 'insmod' ? 'loading' : 'unloading'} ${open.section.name}`;
    return {
      status: 'load-failed',
      reason: crash ? `${crash} (while ${what})` : `the guest stopped while ${what}`,
      loaded,
    };
  }
  const missing = (plan ?? []).filter((name) => !loaded.some((m) => m.name === name));
  if (missing.length === 0 && (done || boot.exitCode === 0)) return { status: 'loaded', loaded };
  const crash = crashLine(lines);
  const progress = missing.length ? `not loaded: ${missing.join(' ')}` : `last: ${last ?? 'nothing'}`;
  return { status: 'boot-failed', reason: crash ?? `the guest stopped before KFARM: done (${progress})`, loaded };
}

/** What the markers of one console log say, before any verdict. */
interface ConsoleScan {
  init: boolean;
  done: boolean;
  plan: string[] | undefined;
  loaded: ConsoleVerdict['loaded'];
  /** The first `load-failed`, with the lines of its insmod. */
  failed: { name: string; rc: string; section: Section } | undefined;
  /** An insmod or rmmod without its result yet; `at` is the index of its marker line. */
  open: { kind: 'insmod' | 'rmmod'; section: Section; at: number } | undefined;
  /** The last marker line, normalised. */
  last: string | undefined;
}

function scanConsole(lines: readonly string[]): ConsoleScan {
  const scan: ConsoleScan = {
    init: false,
    done: false,
    plan: undefined,
    loaded: [],
    failed: undefined,
    open: undefined,
    last: undefined,
  };
  lines.forEach((line, at) => {
    const marker = markerOf(line);
    if (!marker) {
      scan.open?.section.lines.push(line);
      return;
    }
    scan.last = `KFARM: ${marker.word}${marker.args.length ? ` ${marker.args.join(' ')}` : ''}`;
    const [name = '', second = '', third = ''] = marker.args;
    switch (marker.word) {
      case 'init':
        scan.init = true;
        break;
      case 'plan':
        scan.plan = marker.args;
        break;
      case 'insmod':
      case 'rmmod':
        scan.open = { kind: marker.word, section: { name, lines: [] }, at };
        break;
      case 'kmsg':
      case 'kmsg-end':
        break;
      case 'loaded':
        scan.loaded.push({ name, source: second, taint: third || '-' });
        scan.open = undefined;
        break;
      case 'load-failed': {
        const open = scan.open;
        scan.failed ??= { name, rc: second, section: open?.section.name === name ? open.section : { name, lines: [] } };
        scan.open = undefined;
        break;
      }
      case 'unloaded':
      case 'unload-failed':
        scan.open = undefined;
        break;
      case 'done':
        scan.done = true;
        break;
    }
  });
  return scan;
}

function markerOf(line: string): { word: string; args: string[] } | undefined {
  const at = line.indexOf('KFARM: ');
  if (at < 0) return undefined;
  const words = line
    .slice(at + 'KFARM: '.length)
    .trim()
    .split(/\s+/);
  const word = words.shift();
  return word ? { word, args: words } : undefined;
}

/** `[    2.345678] kf_x: Unknown symbol foo (err -2)` → `kf_x: Unknown symbol foo (err -2)`. */
export function stripTimestamp(line: string): string {
  return line.replace(/^\s*(<\d+>)?\[\s*\d+\.\d+\]\s?/, '').trim();
}

/** Kernel lines that explain a failed load, most specific first. */
const REASONS: RegExp[] = [
  /Unknown symbol/,
  /disagrees about version of symbol/,
  /version magic .* should be/,
  /is rejected|unsigned module loading is restricted|Lockdown:|Key was rejected|Required key not available/,
  /\b(BUG|Oops|general protection fault)\b|Kernel panic|kernel BUG/,
  /[Ii]nvalid (module|ELF)|module has bad taint|Unknown rela|bad vermagic|exec format/i,
  /unknown parameter|invalid for parameter|Unknown parameter|Bad parameter/,
  /(already loaded|File exists)/,
];

/**
 * The line that says why `name` did not load, from the kernel's messages meanwhile (preferred: the kernel's own
 * words) and insmod's output (its errno text, when the kernel said nothing useful).
 */
export function kernelReason(name: string, section: readonly string[]): string | undefined {
  const isKernel = (line: string) => /^\s*(<\d+>)?\[\s*\d+\.\d+\]/.test(line);
  const kernel = section
    .filter(isKernel)
    .map(stripTimestamp)
    .filter((l) => l !== '' && !BENIGN.test(l));
  const other = section
    .filter((l) => !isKernel(l))
    .map((l) => l.trim())
    .filter((l) => l !== '');
  for (const pattern of REASONS) {
    const found = kernel.find((l) => pattern.test(l));
    if (found) return found;
  }
  return kernel.find((l) => l.startsWith(`${name}: `)) ?? other.find((l) => /^insmod: /.test(l)) ?? other[0];
}

/** Printed on every first unsigned out-of-tree load, successful or not: never the reason. */
const BENIGN =
  /module verification failed: signature and\/or required key missing - tainting kernel|loading out-of-tree module taints kernel/;

function crashLine(lines: readonly string[]): string | undefined {
  const clean = lines.map(stripTimestamp);
  return (
    clean.find((l) => /Kernel panic - not syncing/.test(l)) ??
    clean.find((l) => /\b(BUG:|Oops:|general protection fault)/.test(l)) ??
    undefined
  );
}

function bootFailure(lines: readonly string[], boot: BootFacts): string {
  const crash = crashLine(lines);
  if (crash) return crash;
  const text = lines.map(stripTimestamp).filter((l) => l !== '' && !/^(SeaBIOS|Booting from|iPXE|Press Ctrl)/.test(l));
  const tail = text.at(-1);
  const qemu = boot.stderr?.split('\n').find((l) => l.trim() !== '');
  if (!tail && qemu) return `QEMU: ${qemu}`;
  const exit = boot.exitCode === undefined ? 'was killed' : `exited ${boot.exitCode}`;
  return `the kernel stopped before /init ran (QEMU ${exit}${tail ? `; last console line: ${tail}` : ''})`;
}
