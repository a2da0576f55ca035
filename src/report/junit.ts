import { lastLines } from '../util/read-file.js';
import type { TargetResult, VerifyResult } from '../model/result.js';
import { badStatuses } from '../model/result.js';
import { formatDiagnostic, formatDiagnosticLine, stripAnsi } from '../dkms/compiler-errors.js';
import { moduleTitle, type FarmReport } from '../model/report.js';

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
  const counts = { tests: 0, failures: 0, skipped: 0 };
  for (const target of report.targets) {
    const { body, verdict } = caseVerdict(target);
    counts.tests++;
    if (verdict === 'failure') counts.failures++;
    if (verdict === 'skipped') counts.skipped++;
    body.push(...(await systemOut(target, logs)));
    cases.push(testcase(target.id, classname(target.distro, target.release), target.durationMs, body));
  }
  for (const id of report.notRun ?? []) {
    counts.tests++;
    counts.skipped++;
    const [distro = '', release = ''] = id.split('/');
    const body = [`      <skipped message="not run: the run stopped before this target"/>`];
    cases.push(testcase(id, classname(distro, release), 0, body));
  }
  const time = seconds(report.durationMs);
  const attrs = `tests="${counts.tests}" failures="${counts.failures}" errors="0" skipped="${counts.skipped}" time="${time}"`;
  const suiteName = attr(moduleTitle(report));
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="kfarm" ${attrs}>`,
    `  <testsuite name="${suiteName}" ${attrs} timestamp="${attr(report.startedAt)}">`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

/** A test case's verdict element: failed/timeout/oom and load failures fail, skipped and expected ones skip. */
function caseVerdict(target: TargetResult): { body: string[]; verdict?: 'failure' | 'skipped' } {
  if (badStatuses.includes(target.status)) {
    const message = attr(failureMessage(target));
    const failure = `<failure message="${message}" type="${attr(target.status)}">${text(failureBody(target))}</failure>`;
    return { body: [`      ${failure}`], verdict: 'failure' };
  }
  if (target.status === 'skipped') {
    return {
      body: [`      <skipped message="${attr(target.error ?? 'excluded by dkms.conf')}"/>`],
      verdict: 'skipped',
    };
  }
  if (target.status === 'expected-failure') {
    const why = `expected failure: ${target.expected ?? target.error ?? ''}`.trimEnd();
    return { body: [`      <skipped message="${attr(why)}"/>`], verdict: 'skipped' };
  }
  if (target.verify && target.verify.status !== 'loaded') {
    // Built, but the module did not load on its kernel: as much a failure as a compile error.
    const why = describeLoad(target.verify);
    return {
      body: [`      <failure message="${attr(why)}" type="${attr(target.verify.status)}">${text(why)}</failure>`],
      verdict: 'failure',
    };
  }
  return { body: [] };
}

/** The load test's outcome (when there was one) and the end of make.log. */
async function systemOut(target: TargetResult, logs: JunitLogs): Promise<string[]> {
  const lines: string[] = [];
  if (target.verify)
    lines.push(
      `kfarm verify: ${describeLoad(target.verify)}${target.verify.log ? ` (log: ${target.verify.log})` : ''}`,
    );
  if (target.log) {
    const tail = lastLines(await logs.tail(target.log), JUNIT_TAIL_LINES);
    if (tail !== '') lines.push(tail);
  }
  return lines.length === 0 ? [] : [`      <system-out>${text(lines.join('\n'))}</system-out>`];
}

function describeLoad(verify: VerifyResult): string {
  return `${verify.status}${verify.reason ? `: ${verify.reason}` : ''}`;
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
