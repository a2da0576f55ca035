import type { FarmEvents, Phase } from '../model/events.js';
import { countStatuses } from '../model/report.js';
import type { Target, TargetResult, TargetStatus } from '../model/result.js';
import { formatDiagnostic, stripAnsi } from '../dkms/compiler-errors.js';
import { printable } from '../util/shell.js';
import { plainProgress } from './plain.js';

export interface TtyProgressOptions {
  stream: NodeJS.WriteStream;
  /** Targets in the run (for done/total and the ETA). */
  total: number;
  /** Builds at a time (for the ETA). */
  concurrency: number;
  now?: () => number;
  /** Colors (default: unless NO_COLOR is set). */
  color?: boolean;
  /** Finished targets kept in the frame (default 5). */
  recent?: number;
  /** Redraw period (default 100 ms: at most 10 frames a second). */
  intervalMs?: number;
}

export interface Progress {
  events: FarmEvents;
  /** Prints a line that stays (above the live frame on a TTY): use it instead of writing to the stream directly. */
  log(line: string): void;
  /** Draws the final frame (TTY) and stops the timer. Idempotent. */
  stop(): void;
}

type State = 'queued' | 'image' | Phase | 'done';

interface TargetState {
  id: string;
  state: State;
  /** When the target entered its first build phase (container start). */
  buildSince?: number;
  /** When it entered its current state. */
  since: number;
  result?: TargetResult;
}

const buildPhases: ReadonlySet<string> = new Set<Phase>(['start', 'copyIn', 'evaluate', 'build', 'copyOut']);
/** Statuses whose duration is a real build, the basis of the ETA (skipped and cached are near-instant). */
const timedStatuses: ReadonlySet<TargetStatus> = new Set<TargetStatus>([
  'built',
  'failed',
  'expected-failure',
  'timeout',
  'oom',
]);

const symbols: Record<TargetStatus, [string, 'green' | 'red' | 'yellow' | 'dim']> = {
  built: ['✓', 'green'],
  cached: ['✓', 'green'],
  skipped: ['-', 'dim'],
  'expected-failure': ['~', 'yellow'],
  failed: ['✗', 'red'],
  timeout: ['✗', 'red'],
  oom: ['✗', 'red'],
};
const colors = { green: '\x1b[32m', red: '\x1b[31m', yellow: '\x1b[33m', dim: '\x1b[2m', bold: '\x1b[1m' } as const;
const reset = '\x1b[0m';

/**
 * Live progress for a terminal: running builds with their phase and elapsed time, the last few finished
 * targets, and a footer with counts, elapsed time and an ETA. The frame is redrawn in place (cursor up +
 * erase) at most every `intervalMs`, only when it changed, and never taller than the terminal.
 */
export class TtyProgress implements FarmEvents, Progress {
  readonly #stream: NodeJS.WriteStream;
  readonly #now: () => number;
  readonly #total: number;
  readonly #concurrency: number;
  readonly #color: boolean;
  readonly #recent: number;
  readonly #started: number;
  readonly #targets = new Map<string, TargetState>();
  readonly #images = new Map<string, { what: string; since: number; doing?: string }>();
  readonly #finished: TargetResult[] = [];
  readonly #timer: NodeJS.Timeout;
  #drawnLines = 0;
  #lastFrame = '';
  #stopped = false;

  constructor(options: TtyProgressOptions) {
    this.#stream = options.stream;
    this.#now = options.now ?? Date.now;
    this.#total = options.total;
    this.#concurrency = Math.max(1, options.concurrency);
    this.#color = options.color ?? !process.env.NO_COLOR;
    this.#recent = options.recent ?? 5;
    this.#started = this.#now();
    this.#timer = setInterval(() => this.redraw(), options.intervalMs ?? 100);
    this.#timer.unref();
  }

  get events(): FarmEvents {
    return this;
  }

  readonly onPrepare = (ref: string, what: string): void => {
    this.#images.set(ref, { what, since: this.#now() });
  };

  readonly onProgress = (ref: string, doing: string): void => {
    const image = this.#images.get(ref);
    if (image) image.doing = doing;
  };

  readonly onReady = (ref: string, _ms?: number, _reused?: boolean): void => {
    this.#images.delete(ref);
  };

  readonly onFailed = (ref: string): void => {
    this.#images.delete(ref);
  };

  readonly onTargetStart = (target: Target): void => {
    this.#targets.set(target.id, { id: target.id, state: 'queued', since: this.#now() });
  };

  readonly onTargetPhase = (target: Target, phase: 'image' | Phase): void => {
    const now = this.#now();
    const state = this.#targets.get(target.id) ?? { id: target.id, state: 'queued' as State, since: now };
    state.state = phase;
    state.since = now;
    if (buildPhases.has(phase)) state.buildSince ??= now;
    this.#targets.set(target.id, state);
  };

  readonly onTargetDone = (result: TargetResult): void => {
    const state = this.#targets.get(result.id) ?? { id: result.id, state: 'queued' as State, since: this.#now() };
    state.state = 'done';
    state.result = result;
    this.#targets.set(result.id, state);
    this.#finished.push(result);
  };

  readonly onWarning = (message: string): void => this.log(`warning: ${message}`);

  /** Prints `line` above the live frame (erasing and redrawing it), so it stays in the scrollback. */
  log(line: string): void {
    if (this.#stopped) {
      this.#stream.write(`${line}\n`);
      return;
    }
    const erase = this.#drawnLines > 0 ? `\x1b[${this.#drawnLines}A\r\x1b[J` : '';
    this.#drawnLines = 0;
    this.#lastFrame = '';
    this.#stream.write(`${erase}${line}\n`);
    this.#draw();
  }

  /** Redraws if the frame changed (the timer calls this). */
  redraw(): void {
    if (this.#stopped) return;
    this.#draw();
  }

  /** Draws the final frame and stops redrawing. */
  stop(): void {
    if (this.#stopped) return;
    clearInterval(this.#timer);
    this.#draw();
    this.#stopped = true;
  }

  /** The current frame, one string per line, already clipped to the terminal's height and width. */
  frame(): string[] {
    const now = this.#now();
    const rows = this.#stream.rows && this.#stream.rows > 1 ? this.#stream.rows : 24;
    const width = Math.max(20, (this.#stream.columns || 80) - 1);
    let budget = Math.max(1, rows - 1) - 1; // the footer always shows; one row spare so the terminal never scrolls

    const running = [...this.#targets.values()]
      .filter((t) => buildPhases.has(t.state))
      .sort((a, b) => (a.buildSince ?? a.since) - (b.buildSince ?? b.since)); // stable: ties keep start order
    const images = [...this.#images.entries()].sort((a, b) => a[1].since - b[1].since);
    const finished = this.#finished.slice(-this.#recent);

    const runningLines = clipSection(
      running.map((t) => `  ${this.#paint('bold', '▸')} ${t.id}  ${t.state} ${secs(now - (t.buildSince ?? t.since))}`),
      budget,
      (n) => `  … and ${n} more running`,
    );
    budget -= runningLines.length;
    const imageLines = clipSection(
      images.map(
        ([ref, { what, since, doing }]) =>
          `  ${this.#paint('dim', '◌')} preparing image ${ref} (${what}) ${secs(now - since)}${doing ? `: ${doing}` : ''}`,
      ),
      budget,
      (n) => `  … and ${n} more images`,
    );
    budget -= imageLines.length;
    const finishedLines = finished.slice(Math.max(0, finished.length - budget)).map((r) => this.#finishedLine(r));

    const lines = [...finishedLines, ...runningLines, ...imageLines].map((line) => this.#fit(line, width));
    lines.push(this.#fit(this.#footer(now), width));
    return lines;
  }

  /** The footer: `[3/12] 2 built, 1 failed, 0 skipped · 00:42 · ETA 01:10 · 4 running · 5 waiting`. */
  footer(): string {
    return this.#footer(this.#now());
  }

  #footer(now: number): string {
    const counts = countStatuses(this.#finished);
    let timedMs = 0;
    let timed = 0;
    for (const result of this.#finished) {
      if (timedStatuses.has(result.status)) {
        timedMs += result.durationMs;
        timed++;
      }
    }
    const done = this.#finished.length;
    const parts = [`${counts.built} built`, `${counts.failed} failed`, `${counts.skipped} skipped`];
    for (const status of ['cached', 'expected-failure', 'timeout', 'oom'] as const) {
      if (counts[status] > 0) parts.push(`${counts[status]} ${status}`);
    }
    let running = 0;
    let waiting = 0;
    for (const t of this.#targets.values()) {
      if (buildPhases.has(t.state)) running++;
      else if (t.state !== 'done') waiting++;
    }
    // Most important first: a narrow terminal cuts the end of the line.
    const segments = [`[${done}/${this.#total}] ${parts.join(', ')}`, clock(now - this.#started)];
    const remaining = Math.max(0, this.#total - done);
    if (remaining > 0)
      segments.push(timed > 0 ? `ETA ${clock(((timedMs / timed) * remaining) / this.#concurrency)}` : 'ETA --:--');
    if (running > 0) segments.push(`${running} running`);
    const notStarted = Math.max(0, this.#total - this.#targets.size);
    if (waiting + notStarted > 0) segments.push(`${waiting + notStarted} waiting`);
    return segments.join(' · ');
  }

  #finishedLine(result: TargetResult): string {
    const [symbol, color] = symbols[result.status];
    let line = `  ${this.#paint(color, symbol)} ${result.id}  ${result.status} ${secs(result.durationMs)}`;
    const why = result.firstError
      ? formatDiagnostic(result.firstError)
      : result.status === 'built' || result.status === 'cached'
        ? ''
        : (result.expected ?? result.error ?? '');
    if (why) line += `  ${printable(stripAnsi(why).replace(/[\r\n]+/g, ' '))}`;
    return line;
  }

  #paint(color: keyof typeof colors, text: string): string {
    return this.#color ? `${colors[color]}${text}${reset}` : text;
  }

  /** Cuts a line to `width` visible characters (escape sequences do not count) so it never wraps. */
  #fit(line: string, width: number): string {
    let visible = 0;
    let out = '';
    for (let i = 0; i < line.length;) {
      if (line[i] === '\x1b') {
        const end = line.indexOf('m', i);
        const stop = end === -1 ? line.length : end + 1;
        out += line.slice(i, stop);
        i = stop;
        continue;
      }
      const code = line.codePointAt(i) ?? 0;
      const char = String.fromCodePoint(code);
      if (visible === width - 1 && hasMoreVisible(line, i + char.length)) {
        out += '…';
        break;
      }
      if (visible >= width) break;
      out += char;
      visible++;
      i += char.length;
    }
    return this.#color && out.includes('\x1b') ? `${out}${reset}` : out;
  }

  #draw(): void {
    const lines = this.frame();
    const text = lines.map((line) => `${line}\x1b[K\n`).join('');
    if (text === this.#lastFrame) return;
    const erase = this.#drawnLines > 0 ? `\x1b[${this.#drawnLines}A\r\x1b[J` : '';
    this.#stream.write(erase + text);
    this.#lastFrame = text;
    this.#drawnLines = lines.length;
  }
}

/** The TTY view on an interactive terminal outside CI; the timestamped lines of plainProgress otherwise. */
export function createProgress(
  stream: NodeJS.WriteStream,
  opts: { total: number; concurrency: number; now?: () => number; env?: NodeJS.ProcessEnv },
): Progress {
  const env = opts.env ?? process.env;
  if (stream.isTTY && !env.CI) {
    return new TtyProgress({
      stream,
      total: opts.total,
      concurrency: opts.concurrency,
      ...(opts.now ? { now: opts.now } : {}),
      color: !env.NO_COLOR,
    });
  }
  const write = (line: string) => {
    stream.write(`${line}\n`);
  };
  return { events: plainProgress(write), log: write, stop: () => undefined };
}

function clipSection(lines: string[], budget: number, more: (n: number) => string): string[] {
  if (budget <= 0) return [];
  if (lines.length <= budget) return lines;
  const kept = lines.slice(0, budget - 1);
  kept.push(more(lines.length - kept.length));
  return kept;
}

function hasMoreVisible(line: string, from: number): boolean {
  for (let i = from; i < line.length; i++) {
    if (line[i] === '\x1b') {
      const end = line.indexOf('m', i);
      if (end === -1) return false;
      i = end;
      continue;
    }
    return true;
  }
  return false;
}

function secs(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
}

/** mm:ss, or h:mm:ss from an hour. */
function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
}
