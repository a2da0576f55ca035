import { formatDiagnostic } from '../dkms/compiler-errors.js';
import { moduleTitle, type FarmReport } from '../model/report.js';
import type { TargetResult } from '../model/result.js';
import { byKernelVersion, compatibility, describeRange } from './compat.js';
import { duration, failureGroups } from './markdown.js';
import { kernelFlavour } from '../util/debian-version.js';

/**
 * report.html: one self-contained page (inline CSS, no script, no network) a person opens after a run. A kernels ×
 * (build, load) grid per release and flavour, oldest kernel first, each status as colour and as text (readable
 * without colour, printable, searchable); the kernel-compatibility ranges and the failure groups with their first
 * error and the kernel header it came through; per-target time as a bar of its phases (image wait, start, copy
 * in, evaluate, build, copy out, verify) on one scale; links to each make.log and verify.log. Plain rows and
 * fixed-width bars keep a 500-kernel page light: no layout work grows faster than the rows.
 */

const PHASES = ['image', 'start', 'copyIn', 'evaluate', 'build', 'copyOut', 'verify'] as const;
type BarPhase = (typeof PHASES)[number];
const PHASE_LABEL: Record<BarPhase, string> = {
  image: 'image wait',
  start: 'start',
  copyIn: 'copy in',
  evaluate: 'evaluate',
  build: 'compile',
  copyOut: 'collect',
  verify: 'verify',
};

export function renderHtml(report: FarmReport): string {
  const lines = byKernelVersion(report.targets);
  const scale = Math.max(1, ...report.targets.map((t) => phaseTimes(t).reduce((sum, [, ms]) => sum + ms, 0)));
  const verified = report.targets.some((t) => t.verify);
  const body = [
    header(report),
    compatSection(report),
    failuresSection(report),
    ...lines.map((line) => gridSection(line, scale, verified)),
    notRunSection(report),
    legend(),
  ].join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(moduleTitle(report))} — kfarm report</title>
<style>${STYLE}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

function header(report: FarmReport): string {
  const counts = Object.entries(report.counts)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `<span class="st st-${esc(status)}">${n} ${esc(status)}</span>`)
    .join(' ');
  const partial = report.partial ? ' <strong>(interrupted: partial)</strong>' : '';
  const total = report.targets.length + (report.notRun?.length ?? 0);
  return `<header><h1>${esc(moduleTitle(report))}</h1>
<p>${total} kernel(s): ${counts}${partial}</p>
<p>Started ${esc(report.startedAt)}, wall time ${duration(report.durationMs)}.</p></header>`;
}

function compatSection(report: FarmReport): string {
  const ranges = report.compatibility ?? compatibility(report.targets);
  if (ranges.length === 0) return '<section id="compat"><h2>Kernel compatibility</h2><p>No failures.</p></section>';
  const items = ranges.map((r) => `<li class="range st-${esc(r.status)}">${esc(describeRange(r))}</li>`);
  return `<section id="compat"><h2>Kernel compatibility</h2><ul>${items.join('')}</ul></section>`;
}

function failuresSection(report: FarmReport): string {
  const groups = failureGroups(report.targets);
  if (groups.length === 0) return '';
  const items = groups.map((g) => {
    const first = g.targets[0];
    const error = first?.firstError;
    const context = error?.context ? `<div class="context">at ${esc(error.context)}</div>` : '';
    const what = error ? `<code>${esc(formatDiagnostic(error))}</code>${context}` : esc(g.label);
    const kernels = g.targets.map((t) => targetLink(t)).join(', ');
    const status = `<span class="st st-${esc(g.status)}">${esc(g.status)}</span>`;
    // Long lists fold away: the ranges above already say which kernels, the links are for going to one.
    const list = `<details class="kernels"><summary>${g.targets.length} kernel(s)</summary>${kernels}</details>`;
    return `<li class="group">${status} ${what}${list}</li>`;
  });
  return `<section id="failures"><h2>Failures</h2><ol>${items.join('')}</ol></section>`;
}

function gridSection(line: TargetResult[], scale: number, verified: boolean): string {
  const first = line[0] as TargetResult;
  const flavour = kernelFlavour(first.kernel) ?? first.kernel;
  const load = verified ? '<th>Load</th>' : '';
  const head = `<tr><th>Kernel</th><th>Build</th>${load}<th class="dur">Duration</th><th>Time</th><th>Logs</th></tr>`;
  const rows = line.map((t) => row(t, scale, verified));
  return `<section class="release"><h2>${esc(first.distro)} ${esc(first.release)} · ${esc(flavour)}</h2>
<table class="grid"><thead>${head}</thead><tbody>
${rows.join('\n')}
</tbody></table></section>`;
}

function row(t: TargetResult, scale: number, verified: boolean): string {
  const build = `<td class="st st-${esc(t.status)}">${esc(t.status)}</td>`;
  const load = verified
    ? t.verify
      ? `<td class="st st-${esc(t.verify.status)}" title="${esc(t.verify.reason ?? '')}">${esc(t.verify.status)}</td>`
      : '<td class="st st-none">—</td>'
    : '';
  const logs = [
    t.log ? `<a href="${esc(t.log)}">make.log</a>` : '',
    t.verify?.log ? `<a href="${esc(t.verify.log)}">verify.log</a>` : '',
  ].join(' ');
  const cells = `${build}${load}<td class="num">${duration(t.durationMs)}</td><td>${bar(t, scale)}</td><td>${logs}</td>`;
  return `<tr id="${esc(anchor(t))}"><td class="kernel">${esc(t.kernel)}</td>${cells}</tr>`;
}

function bar(t: TargetResult, scale: number): string {
  const spans = phaseTimes(t)
    .filter(([, ms]) => ms > 0)
    .map(([phase, ms]) => {
      const width = ((ms / scale) * 100).toFixed(2);
      return `<span class="ph ph-${phase}" style="width:${width}%" title="${PHASE_LABEL[phase]} ${duration(ms)}"></span>`;
    });
  return `<div class="bar">${spans.join('')}</div>`;
}

function phaseTimes(t: TargetResult): [BarPhase, number][] {
  return PHASES.map((phase): [BarPhase, number] => [
    phase,
    phase === 'verify' ? (t.verify?.durationMs ?? 0) : (t.phases?.[phase] ?? 0),
  ]);
}

function notRunSection(report: FarmReport): string {
  const ids = report.notRun ?? [];
  if (ids.length === 0) return '';
  return `<section id="not-run"><h2>Not run</h2><p>The run stopped before: ${ids.map(esc).join(', ')}</p></section>`;
}

function legend(): string {
  const items = PHASES.map((p) => `<span><span class="ph ph-${p} swatch"></span>${PHASE_LABEL[p]}</span>`);
  return `<footer><p class="legend">Time bars, one scale for the page: ${items.join(' ')}</p>
<p>Written by kfarm from report.json (<code>kfarm report</code> writes it again).</p></footer>`;
}

function targetLink(t: TargetResult): string {
  return `<a href="#${esc(anchor(t))}">${esc(t.kernel)}</a>`;
}

function anchor(t: TargetResult): string {
  return `t-${t.release}-${t.kernel}`.replace(/[^A-Za-z0-9_.-]/g, '_');
}

/** HTML text and attribute escaping: everything a build printed is untrusted. */
export function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f23;background:#fff}
h1{font-size:1.5em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.4em 0 .4em}
table.grid{border-collapse:collapse;width:100%;table-layout:fixed}
.grid th,.grid td{border-bottom:1px solid #e1e4e8;padding:2px 6px;text-align:left}
.grid td{overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
.grid th:nth-child(1){width:16em}.grid th.dur{width:6em}.grid th:last-child{width:10em}
.grid th:nth-child(2),.grid th:nth-child(3){width:8em}
td.num{font-variant-numeric:tabular-nums}
.st{font-weight:600;border-radius:3px;padding:0 4px}
.st-built,.st-loaded{background:#dcffe4;color:#145a23}.st-cached{background:#e6f3ff;color:#0b4a8b}
.st-failed,.st-load-failed,.st-boot-failed{background:#ffdce0;color:#86181d}
.st-timeout,.st-oom{background:#fff1c2;color:#6a4a00}.st-skipped,.st-none{background:#f1f3f5;color:#444}
.st-expected-failure{background:#f5e6ff;color:#5a1d86}
.bar{display:flex;height:10px;background:#f6f8fa;min-width:4em}
.ph{display:inline-block;height:100%}.swatch{width:1em;height:.8em;margin:0 .3em 0 .8em}
.ph-image{background:#d0d7de}.ph-start{background:#8fb8ff}.ph-copyIn{background:#6cb6ff}.ph-evaluate{background:#b392f0}
.ph-build{background:#2da44e}.ph-copyOut{background:#57ab5a}.ph-verify{background:#d4a72c}
li.group{margin:.4em 0}.context{color:#57606a;font-size:.9em}.kernels{font-size:.9em}
code{font-family:ui-monospace,monospace;background:#f6f8fa;padding:0 3px}
`;
