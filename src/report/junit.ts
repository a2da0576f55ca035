import type { TargetResult } from '../farm/types.js';
import { badStatuses } from '../farm/types.js';
import { formatDiagnostic, formatDiagnosticLine, stripAnsi } from './compiler-errors.js';
import type { FarmReport } from './json.js';

/** Lines of make.log kept in each test case's `<system-out>`. */
export const JUNIT_TAIL_LINES = 100;

export interface JunitLogs {
  /** The end of a log; `path` is relative to the output directory. Only the last 100 lines are used. */
  tail(path: string): Promise<string>;
}

/**
 * JUnit XML for CI test-report viewers: one `<testsuite>` for the module, one `<testcase>` per kernel
 * (failed/timeout/oom → `<failure>`, skipped and expected failures → `<skipped>`, targets never run → `<skipped>`).
 */
export async function renderJunit(report: FarmReport, logs: JunitLogs): Promise<string> {
  const cases: string[] = [];
  let failures = 0;
  let skipped = 0;
  let tests = 0;
  for (const target of report.targets) {
    tests++;
    const body: string[] = [];
    if (badStatuses.includes(target.status)) {
      failures++;
      body.push(
        `      <failure message="${attr(failureMessage(target))}" type="${attr(target.status)}">${text(failureBody(target))}</failure>`,
      );
    } else if (target.status === 'skipped') {
      skipped++;
      body.push(`      <skipped message="${attr(target.error ?? 'excluded by dkms.conf')}"/>`);
    } else if (target.status === 'expected-failure') {
      skipped++;
      body.push(
        `      <skipped message="${attr(`expected failure: ${target.expected ?? target.error ?? ''}`.trimEnd())}"/>`,
      );
    } else if (target.verify && target.verify.status !== 'loaded') {
      // Built, but the module did not load on its kernel: as much a failure as a compile error.
      failures++;
      const why = `${target.verify.status}${target.verify.reason ? `: ${target.verify.reason}` : ''}`;
      body.push(`      <failure message="${attr(why)}" type="${attr(target.verify.status)}">${text(why)}</failure>`);
    }
    if (target.log) {
      const tail = lastLines(await logs.tail(target.log), JUNIT_TAIL_LINES);
      if (tail !== '') body.push(`      <system-out>${text(tail)}</system-out>`);
    }
    cases.push(testcase(target.id, classname(target.distro, target.release), target.durationMs, body));
  }
  for (const id of report.notRun ?? []) {
    tests++;
    skipped++;
    const [distro = '', release = ''] = id.split('/');
    cases.push(
      testcase(id, classname(distro, release), 0, [
        `      <skipped message="not run: the run stopped before this target"/>`,
      ]),
    );
  }
  const time = seconds(report.durationMs);
  const counts = `tests="${tests}" failures="${failures}" errors="0" skipped="${skipped}" time="${time}"`;
  const suiteName = attr(`${report.module} ${report.version}`.trim());
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="kfarm" ${counts}>`,
    `  <testsuite name="${suiteName}" ${counts} timestamp="${attr(report.startedAt)}">`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

function testcase(name: string, classname: string, durationMs: number, body: string[]): string {
  const open = `    <testcase classname="${attr(classname)}" name="${attr(name)}" time="${seconds(durationMs)}"`;
  return body.length === 0 ? `${open}/>` : [`${open}>`, ...body, '    </testcase>'].join('\n');
}

function classname(distro: string, release: string): string {
  return `${distro}.${release}`;
}

/** `file:line:col: message` of the first compiler error, else the one-line reason, else the status. */
export function failureMessage(target: TargetResult): string {
  if (target.firstError) return formatDiagnostic(target.firstError);
  return target.error ?? target.status;
}

function failureBody(target: TargetResult): string {
  const lines: string[] = [];
  if (target.firstError) lines.push(formatDiagnosticLine(target.firstError));
  if (target.error) lines.push(target.error);
  if (lines.length === 0) lines.push(target.status);
  return lines.join('\n');
}

function seconds(ms: number): string {
  return (Math.max(0, ms) / 1000).toFixed(3);
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

// XML 1.0 allows #x9 #xA #xD [#x20-#xD7FF] [#xE000-#xFFFD] [#x10000-#x10FFFF]; anything else (C0 controls,
// lone surrogates, U+FFFE/U+FFFF) cannot even be written as a character reference, so it is dropped.
const invalidXml = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

/** Escapes XML element text (ANSI escape sequences removed first, then characters XML cannot hold). */
export function text(value: string): string {
  return stripAnsi(value)
    .replace(invalidXml, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/\r/g, '&#13;');
}

/** Escapes an XML attribute value (double-quoted); tabs and newlines survive attribute normalization. */
export function attr(value: string): string {
  return text(value).replace(/"/g, '&quot;').replace(/'/g, '&apos;').replace(/\t/g, '&#9;').replace(/\n/g, '&#10;');
}
