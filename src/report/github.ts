import { posix, relative, resolve, sep } from 'node:path';
import type { FirstError } from '../model/result.js';
import { badStatuses } from '../model/result.js';
import { diagnosticKey, formatDiagnostic, normalizedMessage } from '../dkms/compiler-errors.js';
import type { FarmReport } from '../model/report.js';
import { compactList } from './markdown.js';

/** GitHub keeps more, but shows only the first 10 error annotations of a step. */
export const MAX_ANNOTATIONS = 50;

interface Annotation {
  file?: string;
  line?: number;
  column?: number;
  messages: Set<string>;
  /** The message with gcc's option tag removed, used when kernels' compilers tagged it differently. */
  normalized: string;
  verb: string;
  kernels: Set<string>;
  order: number;
}

/**
 * `::error` workflow commands for a run's failures. Diagnostics in the module's source tree carry
 * `file=<sourcePrefix>/<file>,line,col` so GitHub puts them on the diff; one annotation per distinct
 * (file, line, col, message) naming every kernel it fails on. Diagnostics outside the tree (kernel headers),
 * without a file (modpost) and failures without any diagnostic (timeouts, a missing image) become
 * file-less annotations, de-duplicated the same way. At most 50, the ones hitting most kernels first.
 */
export function githubAnnotations(
  report: FarmReport,
  diagnostics: Map<string, FirstError[]>,
  opts: { sourcePrefix: string },
): string[] {
  return [...collectAnnotations(report, diagnostics, opts.sourcePrefix).values()]
    .sort((a, b) => b.kernels.size - a.kernels.size || a.order - b.order)
    .slice(0, MAX_ANNOTATIONS)
    .map(formatAnnotation);
}

function collectAnnotations(
  report: FarmReport,
  diagnostics: Map<string, FirstError[]>,
  sourcePrefix: string,
): Map<string, Annotation> {
  const entries = new Map<string, Annotation>();
  const byId = new Map(report.targets.map((t) => [t.id, t] as const));
  // Report order first (deterministic whatever order the map was filled in), then ids the report lacks.
  const ids = [...report.targets.map((t) => t.id), ...[...diagnostics.keys()].filter((id) => !byId.has(id))];
  for (const id of ids) {
    const target = byId.get(id);
    if (target && !badStatuses.includes(target.status)) continue;
    const kernel = target?.kernel ?? id;
    const list = diagnostics.get(id) ?? [];
    for (const diagnostic of list) addDiagnostic(entries, kernel, diagnostic, sourcePrefix);
    if (list.length === 0 && target) {
      const reason = target.error ?? target.status;
      const generic = target.kernel ? reason.split(target.kernel).join('<kernel>') : reason;
      const verb = target.status === 'failed' ? 'fails' : target.status;
      addAnnotation(entries, `r\0${target.status}\0${generic}`, kernel, () => ({ normalized: generic, verb }), reason);
    }
  }
  return entries;
}

function addDiagnostic(
  entries: Map<string, Annotation>,
  kernel: string,
  diagnostic: FirstError,
  sourcePrefix: string,
): void {
  if (diagnostic.file !== undefined && inSourceTree(diagnostic.file)) {
    const file = sourcePrefix === '' ? diagnostic.file : posix.join(sourcePrefix, diagnostic.file);
    addAnnotation(
      entries,
      `f\0${diagnosticKey(diagnostic)}`,
      kernel,
      () => ({
        file,
        ...(diagnostic.line === undefined ? {} : { line: diagnostic.line }),
        ...(diagnostic.column === undefined ? {} : { column: diagnostic.column }),
        normalized: normalizedMessage(diagnostic.message),
        verb: 'fails',
      }),
      // The header gcc located it in, where the kernel's side of the break is.
      diagnostic.context === undefined ? diagnostic.message : `${diagnostic.message} (at ${diagnostic.context})`,
    );
  } else {
    const message = formatDiagnostic(diagnostic);
    const normalized = formatDiagnostic({ ...diagnostic, message: normalizedMessage(diagnostic.message) });
    addAnnotation(entries, `m\0${normalized}`, kernel, () => ({ normalized, verb: 'fails' }), message);
  }
}

function addAnnotation(
  entries: Map<string, Annotation>,
  key: string,
  kernel: string,
  make: () => Omit<Annotation, 'kernels' | 'order' | 'messages'>,
  message: string,
): void {
  let entry = entries.get(key);
  if (!entry) {
    entry = { ...make(), messages: new Set(), kernels: new Set(), order: entries.size };
    entries.set(key, entry);
  }
  entry.messages.add(message);
  entry.kernels.add(kernel);
}

function formatAnnotation(entry: Annotation): string {
  const kernels = [...entry.kernels];
  const title = `kfarm: ${entry.verb} on ${kernels.length} ${kernels.length === 1 ? 'kernel' : 'kernels'}: ${compactList(kernels)}`;
  const message = entry.messages.size === 1 ? ([...entry.messages][0] as string) : entry.normalized;
  const props: string[] = [];
  if (entry.file !== undefined) props.push(`file=${escapeProperty(entry.file)}`);
  if (entry.line !== undefined) props.push(`line=${entry.line}`);
  if (entry.column !== undefined) props.push(`col=${entry.column}`);
  props.push(`title=${escapeProperty(title)}`);
  return `::error ${props.join(',')}::${escapeData(message)}`;
}

/** A relative path that stays inside the tree (kernel headers are absolute or `./arch/…` relative to the kernel tree). */
function inSourceTree(file: string): boolean {
  if (file === '' || file.startsWith('/') || file.startsWith('./')) return false;
  const normalized = posix.normalize(file);
  return normalized !== '..' && !normalized.startsWith('../');
}

/** Workflow command data: `%`, CR and LF escaped (as @actions/core does). */
export function escapeData(value: string): string {
  return value.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/** Workflow command property value: as data, plus `:` and `,`. */
export function escapeProperty(value: string): string {
  return escapeData(value).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

/**
 * The module source directory relative to the repository root (`$GITHUB_WORKSPACE`, else the working
 * directory), with `/` separators; '' when it is the root.
 */
export function sourcePrefixFor(sourceDir: string, env: NodeJS.ProcessEnv): string {
  const root = resolve(env.GITHUB_WORKSPACE || process.cwd());
  return relative(root, resolve(sourceDir)).split(sep).join('/');
}
