import type { FirstError, TargetResult, TargetStatus } from '../model/result.js';
import { badStatuses } from '../model/result.js';
import { formatDiagnostic, normalizedMessage } from '../dkms/compiler-errors.js';
import { moduleTitle, type FarmReport } from '../model/report.js';
import { byKernelVersion, compatibility, describeRange } from './compat.js';

export const statusEmoji: Record<TargetStatus, string> = {
  built: '✅',
  failed: '❌',
  'expected-failure': '⚠️',
  skipped: '⏭️',
  cached: '♻️',
  timeout: '⏱️',
  oom: '💥',
};

/** Order of the counts in the title line. */
const countOrder: readonly TargetStatus[] = [
  'built',
  'cached',
  'skipped',
  'expected-failure',
  'failed',
  'timeout',
  'oom',
];

const MAX_NOTE = 160;

/**
 * Markdown summary for people and `$GITHUB_STEP_SUMMARY`: a title with the counts, one table row per kernel,
 * then the failures grouped by their first error so that twelve kernels failing on one line make one entry.
 */
export function renderSummary(report: FarmReport): string {
  const lines: string[] = [];
  const total = report.targets.length + (report.notRun?.length ?? 0);
  const counts = countOrder
    .filter((status) => (report.counts[status] ?? 0) > 0)
    .map((status) => `${report.counts[status]} ${status}`);
  if (report.notRun && report.notRun.length > 0) counts.push(`${report.notRun.length} not run`);
  const name = moduleTitle(report) || 'kfarm';
  lines.push(
    `## ${cell(name)}: ${total} ${plural(total, 'kernel')}` +
      `${counts.length > 0 ? ` — ${counts.join(', ')}` : ''}${report.partial ? ' (interrupted: partial)' : ''}`,
  );
  lines.push('');
  // The Load column appears once `kfarm verify` (or build --verify) has booted the kernels.
  const verified = report.targets.some((t) => t.verify);
  lines.push(
    verified
      ? '| Kernel | Release | Status | Load | Duration | Note |'
      : '| Kernel | Release | Status | Duration | Note |',
  );
  lines.push(verified ? '| --- | --- | --- | --- | --- | --- |' : '| --- | --- | --- | --- | --- |');
  // Rows by release and flavour, oldest kernel first: a break shows as where the column changes.
  for (const target of byKernelVersion(report.targets).flat()) {
    const status = `${statusEmoji[target.status]} ${target.status}`;
    const load = verified
      ? ` ${target.verify ? `${loadEmoji[target.verify.status]} ${target.verify.status}` : ''} |`
      : '';
    lines.push(
      `| ${cell(target.id)} | ${cell(target.release)} | ${status} |${load} ${duration(target.durationMs)} | ${cell(clip(note(target)))} |`,
    );
  }
  for (const id of report.notRun ?? []) {
    lines.push(
      `| ${cell(id)} | ${cell(id.split('/')[1] ?? '')} | not run |${verified ? '  |' : ''}  | the run stopped before this target |`,
    );
  }

  const compat = report.compatibility ?? compatibility(report.targets);
  if (compat.length > 0) {
    lines.push('');
    lines.push('### Kernel compatibility');
    lines.push('');
    for (const range of compat) lines.push(`- ${cell(describeRange(range))}`);
  }

  const groups = failureGroups(report.targets);
  if (groups.length > 0) {
    lines.push('');
    lines.push('### Failures');
    lines.push('');
    for (const group of groups) {
      const prefix = group.status === 'failed' ? '' : `${statusEmoji[group.status]} ${group.status}: `;
      const what = group.diagnostic ? codeSpan(group.label) : cell(group.label);
      lines.push(`- ${prefix}${what} on ${cell(compactList(group.targets.map((t) => t.id)))}`);
    }
  }
  lines.push('');
  return lines.join('\n');
}

/** GitHub's limit on one step summary (`$GITHUB_STEP_SUMMARY`): 1 MiB, with room for what a workflow adds. */
export const SUMMARY_LIMIT_BYTES = 1024 * 1024 - 4096;

/**
 * A summary kept under `limit` bytes: when it is longer, the last kernel rows go first, then the last failure
 * groups, each cut said in a line pointing to report.json; the title and the table head always stay.
 */
export function capSummary(summary: string, limit = SUMMARY_LIMIT_BYTES): string {
  if (Buffer.byteLength(summary) <= limit) return summary;
  const lines = summary.split('\n');
  const failuresAt = lines.indexOf('### Failures');
  const compatAt = lines.indexOf('### Kernel compatibility');
  const afterTable = compatAt === -1 ? failuresAt : compatAt;
  const tableEnd = afterTable === -1 ? lines.length - 1 : afterTable - 1;
  const head = lines.slice(0, 4);
  const rows = lines.slice(4, tableEnd);
  // The compatibility lines (one per failure and release) are few and what a reader wants first: always kept.
  const compat = compatAt === -1 ? [] : lines.slice(compatAt, failuresAt === -1 ? -1 : failuresAt - 1);
  const failures = failuresAt === -1 ? [] : lines.slice(failuresAt + 2, -1);
  const note = (n: number, what: string) =>
    `_${n} more ${what} not shown: a step summary holds at most 1 MiB; report.json and junit.xml have every target._`;
  const render = (r: number, f: number) => {
    const table = [
      ...head,
      ...rows.slice(0, r),
      ...(r < rows.length ? ['', note(rows.length - r, 'kernel row(s)')] : []),
    ];
    const groups = failures.slice(0, f);
    const cut = f < failures.length ? ['', note(failures.length - f, 'failure group(s)')] : [];
    const compatPart = compat.length > 0 ? ['', ...compat] : [];
    const failurePart = failures.length > 0 ? ['', '### Failures', '', ...groups, ...cut] : [];
    return [...table, ...compatPart, ...failurePart, ''].join('\n');
  };
  const fits = (r: number, f: number) => Buffer.byteLength(render(r, f)) <= limit;
  const failuresKept = largestFitting(failures.length, (f) => fits(0, f));
  return render(
    largestFitting(rows.length, (r) => fits(r, failuresKept)),
    failuresKept,
  );
}

/** The largest n in 0…max for which fits(n) holds (fits is monotone), by binary search. */
function largestFitting(max: number, fits: (n: number) => boolean): number {
  let low = 0;
  let high = max;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (fits(mid)) low = mid;
    else high = mid - 1;
  }
  return low;
}

export interface FailureGroup {
  status: TargetStatus;
  /** What the kernels have in common: the formatted first error, or the reason. */
  label: string;
  diagnostic: boolean;
  targets: TargetResult[];
}

/** Failed, timed-out and OOM targets grouped by first error (file + line + message), biggest group first. */
export function failureGroups(targets: readonly TargetResult[]): FailureGroup[] {
  const groups = new Map<string, { members: TargetResult[]; order: number }>();
  for (const target of targets) {
    if (!badStatuses.includes(target.status)) continue;
    const key = groupKey(target);
    let group = groups.get(key);
    if (!group) {
      group = { members: [], order: groups.size };
      groups.set(key, group);
    }
    group.members.push(target);
  }
  return [...groups.values()]
    .sort((a, b) => b.members.length - a.members.length || a.order - b.order)
    .map(({ members }) => {
      const first = members[0] as TargetResult;
      if (first.firstError)
        return {
          status: first.status,
          label: groupDiagnostic(members.map((m) => m.firstError as FirstError)),
          diagnostic: true,
          targets: members,
        };
      const reasons = new Set(members.map((m) => m.error ?? m.status));
      const label = reasons.size === 1 ? (first.error ?? first.status) : genericReason(first);
      return { status: first.status, label, diagnostic: false, targets: members };
    });
}

function groupKey(target: TargetResult): string {
  const e = target.firstError;
  if (e) return `e\0${target.status}\0${e.file ?? ''}\0${e.line ?? ''}\0${normalizedMessage(e.message)}`;
  return `r\0${target.status}\0${genericReason(target)}`;
}

/** The reason with the kernel release replaced, so `… on kernel 6.1.0-56-amd64 …` groups across kernels. */
function genericReason(target: TargetResult): string {
  const reason = target.error ?? target.status;
  return target.kernel ? reason.split(target.kernel).join('<kernel>') : reason;
}

/** The shared diagnostic; when gcc versions tag it differently, without the option tag. */
function groupDiagnostic(errors: FirstError[]): string {
  const first = errors[0] as FirstError;
  const same = errors.every((e) => e.message === first.message);
  return formatDiagnostic(same ? first : { ...first, message: normalizedMessage(first.message) });
}

const loadEmoji: Record<NonNullable<TargetResult['verify']>['status'], string> = {
  loaded: '✅',
  'load-failed': '❌',
  'boot-failed': '💥',
  timeout: '⏱️',
};

function note(target: TargetResult): string {
  switch (target.status) {
    case 'built':
    case 'cached':
      return target.verify && target.verify.status !== 'loaded' ? (target.verify.reason ?? target.verify.status) : '';
    case 'skipped':
      return target.error ?? 'excluded by dkms.conf';
    case 'expected-failure':
      return `expected: ${target.expected ?? ''}`.trimEnd();
    default:
      return target.firstError ? formatDiagnostic(target.firstError) : (target.error ?? '');
  }
}

/** `a, b, c, d` up to four; beyond that `a, b, c and N more`. */
export function compactList(items: readonly string[]): string {
  if (items.length <= 4) return items.join(', ');
  return `${items.slice(0, 3).join(', ')} and ${items.length - 3} more`;
}

/** 950 ms → `0.9 s`, 65 s → `1m 05s`, 3725 s → `1h 02m`. */
export function duration(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const whole = Math.floor(s);
  if (whole < 3600) return `${Math.floor(whole / 60)}m ${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h ${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}

/** Table-cell text: one line, markdown punctuation and `|` backslash-escaped so it renders literally. */
export function cell(value: string): string {
  return value.replace(/[\r\n]+/g, ' ').replace(/[\\`*_|<>[\]~&]/g, (c) => `\\${c}`);
}

/** An inline code span that survives backticks in its content. */
export function codeSpan(value: string): string {
  const text = value.replace(/[\r\n]+/g, ' ');
  let longest = 0;
  for (const run of text.match(/`+/g) ?? []) longest = Math.max(longest, run.length);
  const fence = '`'.repeat(longest + 1);
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${text}${pad}${fence}`;
}

function clip(value: string): string {
  return value.length > MAX_NOTE ? `${value.slice(0, MAX_NOTE - 1)}…` : value;
}

function plural(n: number, word: string): string {
  return n === 1 ? word : `${word}s`;
}
