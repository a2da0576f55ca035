import { formatDiagnostic, normalizedMessage } from '../dkms/compiler-errors.js';
import type { CompatRange } from '../model/report.js';
import { badStatuses, type TargetResult } from '../model/result.js';
import { compareDebianVersions, kernelFlavour } from '../util/debian-version.js';
import { printable } from '../util/shell.js';

export type { CompatRange } from '../model/report.js';

/**
 * Kernel compatibility: which kernels a module builds (and loads) on, and since when it breaks. Per release and
 * kernel flavour the targets are lined up by kernel version (Debian's comparison), and each failure signature —
 * the first compiler error (file, line, message), or the reason when there is none, or the kernel's line when the
 * module did not load — gets the kernel ranges it covers, the last kernel before it that built and the first that
 * failed: "builds up to 6.1.0-57-amd64, fails from 6.12.107+deb12-amd64 with `compatbreak.c:5:66: …`".
 */
/** Targets of each release and flavour, oldest kernel first (releases and flavours in their first-seen order). */
export function byKernelVersion(targets: readonly TargetResult[]): TargetResult[][] {
  const lines = new Map<string, TargetResult[]>();
  for (const target of targets) {
    const key = `${target.release}\0${flavourOf(target.kernel)}`;
    lines.set(key, [...(lines.get(key) ?? []), target]);
  }
  return [...lines.values()].map((line) => [...line].sort((a, b) => compareDebianVersions(a.kernel, b.kernel)));
}

export function compatibility(targets: readonly TargetResult[]): CompatRange[] {
  const ranges: CompatRange[] = [];
  for (const line of byKernelVersion(targets)) {
    for (const stage of ['build', 'load'] as const) {
      const signatures = new Map<string, TargetResult[]>();
      for (const target of line) {
        const signature = signatureOf(target, stage);
        if (signature !== undefined) signatures.set(signature, [...(signatures.get(signature) ?? []), target]);
      }
      for (const [signature, failing] of signatures) ranges.push(rangeOf(line, failing, signature, stage));
    }
  }
  return ranges;
}

/** One line: `bookworm amd64: builds up to X, fails from Y with Z` and its other shapes. */
export function describeRange(range: CompatRange): string {
  const where = `${range.release} ${range.flavour}`;
  const [verb, fails] = range.stage === 'build' ? ['builds', 'fails'] : ['loads', 'fails to load'];
  const status =
    range.status === 'failed' || range.status === 'load-failed' || range.signature === range.status
      ? ''
      : range.status === 'expected-failure'
        ? ' (expected)'
        : ` (${range.status})`;
  const what = `${range.signature}${status}`;
  const [only] = range.ranges;
  if (range.ranges.length === 1 && only && range.lastGood !== undefined && range.goodAgain === undefined)
    return `${where}: ${verb} up to ${range.lastGood}, ${fails} from ${only[0]} with ${what}`;
  const spans = range.ranges.map(span).join(', ');
  const before = range.lastGood === undefined ? '' : `; ${verb} up to ${range.lastGood}`;
  const after = range.goodAgain === undefined ? '' : `; ${verb} again from ${range.goodAgain}`;
  return `${where}: ${fails} on ${spans} with ${what}${before}${after}`;
}

/** The analysis as a terminal shows it: a heading and one line per range (control characters escaped). */
export function compatibilityLines(ranges: readonly CompatRange[]): string[] {
  return ranges.length ? ['kernel compatibility:', ...ranges.map((r) => `  ${printable(describeRange(r))}`)] : [];
}

function span([first, last]: [string, string]): string {
  return first === last ? first : `${first} … ${last}`;
}

function signatureOf(target: TargetResult, stage: 'build' | 'load'): string | undefined {
  if (stage === 'load') {
    const verify = target.verify;
    return verify && verify.status !== 'loaded' ? (verify.reason ?? verify.status) : undefined;
  }
  if (!badStatuses.includes(target.status) && target.status !== 'expected-failure') return undefined;
  if (target.firstError)
    return formatDiagnostic({ ...target.firstError, message: normalizedMessage(target.firstError.message) });
  const reason = target.error ?? target.expected ?? target.status;
  return reason.split(target.kernel).join('<kernel>');
}

function isGood(target: TargetResult, stage: 'build' | 'load'): boolean {
  if (stage === 'load') return target.verify?.status === 'loaded';
  return target.status === 'built' || target.status === 'cached';
}

function rangeOf(
  line: TargetResult[],
  failing: TargetResult[],
  signature: string,
  stage: 'build' | 'load',
): CompatRange {
  const failed = new Set(failing);
  const runs: [string, string][] = [];
  let open: [string, string] | undefined;
  for (const target of line) {
    if (failed.has(target)) {
      if (open) open[1] = target.kernel;
      else runs.push((open = [target.kernel, target.kernel]));
    } else open = undefined;
  }
  const first = line.indexOf(failing[0] as TargetResult);
  const last = line.indexOf(failing[failing.length - 1] as TargetResult);
  const lastGood = line
    .slice(0, first)
    .reverse()
    .find((t) => isGood(t, stage))?.kernel;
  const goodAgain = line.slice(last + 1).find((t) => isGood(t, stage))?.kernel;
  const sample = failing[0] as TargetResult;
  return {
    release: sample.release,
    flavour: flavourOf(sample.kernel),
    stage,
    status: stage === 'load' ? 'load-failed' : sample.status,
    signature,
    ranges: runs,
    kernels: failing.length,
    ...(lastGood === undefined ? {} : { lastGood }),
    firstFailed: sample.kernel,
    ...(goodAgain === undefined ? {} : { goodAgain }),
  };
}

function flavourOf(kernel: string): string {
  return kernelFlavour(kernel) ?? kernel;
}
