import { posix } from 'node:path';
import type { FirstError } from '../model/result.js';

/**
 * Error extraction from a DKMS make.log (gcc or clang output under Kbuild).
 *
 * Two tiers:
 * 1. compiler diagnostics `file:line[:col]: [fatal ]error: message` (and gas's `file:line: Error: …`), driver errors (`gcc-12: error: …`,
 *    `cc1: error: …`), plus modpost / linker errors (`ERROR: modpost: "foo" [...] undefined!`,
 *    `ld: error: …`), all in log order;
 * 2. only when there is none of those: make's own `***` errors (`No rule to make target …`,
 *    `Makefile:3: *** missing separator.`), never the `[…] Error 2` lines that merely propagate a failure.
 *
 * The log is scanned once, line by line, without splitting it into an array: make.log can be tens of MB.
 */

export interface DiagnosticContext {
  /** The directory the module was built in (e.g. `/var/lib/dkms/<module>/<version>/build`): the user's source tree. */
  buildDir: string;
  /** At most this many diagnostics are returned (default 1000); the scan stops there. */
  max?: number;
}

const MAX_MESSAGE = 2000;

// file:line[:col]: [fatal ]error: message (GNU as: `Error:`). The file cannot start with whitespace (gcc's source echo lines
// `    7 |  …` do) and has no colon; `[^:]*:` backtracks linearly, so a huge line costs O(length).
const compilerRe = /^([^\s:][^:]*):(\d+)(?::(\d+))?: (?:fatal error|error|Error): (.*)$/;
// gcc-12: error: …, cc1: error: …, clang: error: …, x86_64-linux-gnu-gcc-14: fatal error: …
const driverRe =
  /^((?:[\w.+-]+-)?(?:gcc|g\+\+|cc|cc1|cc1plus|clang|clang\+\+|collect2|as)(?:-[\d.]+)?): (?:fatal error|error): (.*)$/;
// ERROR: modpost: "foo" [/…/x.ko] undefined!   FATAL: modpost: …   (older kernels)
const modpostRe = /^(?:ERROR|FATAL): (.*)$/;
// ld: error: …, ld.lld: error: …, ld: a.o:(.bss+0x0): multiple definition of `x'; …
const linkerRe = /^((?:[\w.+-]+-)?ld(?:\.(?:bfd|gold|lld))?): (.*)$/;
// make: *** No rule to make target 'x', needed by 'y'.  Stop.   Makefile:3: *** missing separator.  Stop.
const makeRe = /^(?:(make(?:\[\d+\])?)|([^\s:][^:]*?):(\d+)): \*\*\* (.*)$/;
// `make: *** [Makefile:236: __sub-make] Error 2`, `… Killed`, `Waiting for unfinished jobs….`: consequences, not causes.
const makeNoiseRe = /^\[|^Waiting for unfinished jobs|^Deleting (?:intermediate )?file/;

// CSI sequences (colors, erase) and OSC 8 hyperlinks (gcc -fdiagnostics-urls), terminated by BEL or ESC \.
// eslint-disable-next-line no-control-regex
const ansiRe = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

/** Removes ANSI escape sequences (colors, OSC 8 hyperlinks). */
export function stripAnsi(text: string): string {
  return text.includes('\x1b') ? text.replace(ansiRe, '') : text;
}

/** Every compiler, modpost and linker error of a make.log in order, de-duplicated; make's errors only when there is none. */
export function compilerDiagnostics(makeLog: string, ctx: DiagnosticContext): FirstError[] {
  const max = ctx.max ?? 1000;
  const found: FirstError[] = [];
  const seen = new Set<string>();
  const fallback: FirstError[] = [];
  const fallbackSeen = new Set<string>();
  scan(makeLog, ctx.buildDir, (diagnostic, primary) => {
    const key = diagnosticIdentity(diagnostic);
    if (primary) {
      if (!seen.has(key)) {
        seen.add(key);
        found.push(diagnostic);
      }
      return found.length >= max;
    }
    if (found.length === 0 && fallback.length < max && !fallbackSeen.has(key)) {
      fallbackSeen.add(key);
      fallback.push(diagnostic);
    }
    return false;
  });
  return found.length > 0 ? found : fallback;
}

/** The first error of a make.log (see compilerDiagnostics), or undefined when it has none. */
export function firstCompilerError(makeLog: string, ctx: DiagnosticContext): FirstError | undefined {
  let first: FirstError | undefined;
  let fallback: FirstError | undefined;
  scan(makeLog, ctx.buildDir, (diagnostic, primary) => {
    if (primary) {
      first = diagnostic;
      return true;
    }
    fallback ??= diagnostic;
    return false;
  });
  return first ?? fallback;
}

/** `file:line:col: message`, `file:line: message`, or just the message. */
export function formatDiagnostic(error: FirstError): string {
  if (!error.file) return error.message;
  let location = error.file;
  if (error.line !== undefined) {
    location += `:${error.line}`;
    if (error.column !== undefined) location += `:${error.column}`;
  }
  return `${location}: ${error.message}`;
}

/** As the compiler would print it: `file:line:col: error: message` (just the message without a file). */
export function formatDiagnosticLine(error: FirstError): string {
  if (!error.file) return error.message;
  return formatDiagnostic({ ...error, message: `error: ${error.message}` });
}

/**
 * The message without gcc's trailing option tag (` [-Werror=implicit-function-declaration]`): gcc 12 and
 * gcc 14 tag the same error differently, and reports group kernels failing on the same line together.
 */
export function normalizedMessage(message: string): string {
  return message.replace(/ \[-W[^\]\s]*\]$/, '');
}

/** Group key of a diagnostic across kernels: file, line, column and the normalized message. */
export function diagnosticKey(error: FirstError): string {
  return `${error.file ?? ''}\0${error.line ?? ''}\0${error.column ?? ''}\0${normalizedMessage(error.message)}`;
}

function diagnosticIdentity(error: FirstError): string {
  return `${error.file ?? ''}\0${error.line ?? ''}\0${error.column ?? ''}\0${error.message}`;
}

/**
 * Calls `emit` for each error line in order; `primary` is false for make's own errors. Stops when `emit`
 * returns true.
 *
 * An error gcc locates outside the module's tree (a kernel header) is reported where the developer will fix it,
 * following gcc's context back into the tree: the first `note: in expansion of macro` (or `in definition of
 * macro`) after it that points into the tree, else the `#include` line of the tree's file in the `In file included
 * from` chain before it, else the file of the `In function` line before it. The header location stays as
 * `context`. Such an error is held until its block of notes has been read.
 */
function scan(log: string, buildDir: string, emit: (diagnostic: FirstError, primary: boolean) => boolean): void {
  const root = buildDir.replace(/\/+$/, '');
  const context = new GccContext(root);
  let start = 0;
  const length = log.length;
  while (start < length) {
    let end = log.indexOf('\n', start);
    if (end === -1) end = length;
    // Cheap filter before any regex: every interesting line has one of these.
    const raw = log.slice(start, end);
    start = end + 1;
    if (!interesting(raw) && !context.interesting(raw)) {
      if (context.flushOn(raw) && emit(...context.flush())) return;
      continue;
    }
    const line = stripAnsi(raw.endsWith('\r') ? raw.slice(0, -1) : raw);
    if (context.resolves(line)) {
      if (emit(...context.flush())) return;
      continue;
    }
    if (context.pending && context.endsBlock(line) && emit(...context.flush())) return;
    if (context.track(line)) continue;
    const parsed = parseLine(line, root);
    if (!parsed) continue;
    if (parsed.primary && context.hold(parsed.diagnostic)) continue;
    if (emit(parsed.diagnostic, parsed.primary)) return;
  }
  if (context.pending) emit(...context.flush());
}

const includedRe = /^(?:In file included|\s+) from (.+?):(\d+)(?::(\d+))?[:,]$/;
const inFunctionRe = /^(.+?): (?:In function|In member function|At top level)\b.*:$/;
const expansionRe = /^([^\s:][^:]*):(\d+)(?::(\d+))?: note: in (?:expansion|definition) of macro /;
const diagnosticRe = /^[^\s:][^:]*:\d+(?::\d+)?: (?:fatal error|error|warning|note): /;

/** gcc's context lines around diagnostics: the include chain, the function, and macro-expansion notes. */
class GccContext {
  #include: { file: string; line: number }[] = [];
  #functionFile: string | undefined;
  pending: FirstError | undefined;

  constructor(private readonly root: string) {}

  interesting(raw: string): boolean {
    return raw.includes(' from ') || raw.includes(': In ') || raw.includes(': At top level') || raw.includes('note:');
  }

  /** A line of source echo or anything else ends nothing; only a new diagnostic, chain or make line does. */
  flushOn(raw: string): boolean {
    return this.pending !== undefined && raw.startsWith('make');
  }

  /** Records include-chain and function lines (true when the line was one). */
  track(line: string): boolean {
    const included = includedRe.exec(line);
    if (included) {
      if (line.startsWith('In file included')) this.#include = [];
      this.#include.push({ file: included[1] ?? '', line: Number(included[2]) });
      return true;
    }
    const fn = inFunctionRe.exec(line);
    if (fn) {
      this.#functionFile = fn[1];
      return true;
    }
    return false;
  }

  /** Holds an error located outside the tree until its notes are read (true when held). */
  hold(diagnostic: FirstError): boolean {
    if (diagnostic.file === undefined || !diagnostic.file.startsWith('/') || diagnostic.line === undefined) {
      this.#reset();
      return false;
    }
    this.pending = diagnostic;
    return true;
  }

  /** A macro-expansion note inside the tree: the held error is located there. */
  resolves(line: string): boolean {
    if (!this.pending) return false;
    const m = expansionRe.exec(line);
    const file = m?.[1];
    if (!m || file === undefined || !file.startsWith(`${this.root}/`)) return false;
    this.#locate(file, Number(m[2]), m[3] === undefined ? undefined : Number(m[3]));
    return true;
  }

  endsBlock(line: string): boolean {
    return (diagnosticRe.test(line) && !expansionRe.test(line)) || includedRe.test(line) || inFunctionRe.test(line);
  }

  /** The held error, at the best place in the tree its context gave (or as printed). */
  flush(): [FirstError, boolean] {
    if (this.pending && this.pending.context === undefined) {
      const include = this.#include.find((i) => i.file.startsWith(`${this.root}/`));
      if (include) this.#locate(include.file, include.line, undefined);
      else if (this.#functionFile?.startsWith(`${this.root}/`)) this.#locate(this.#functionFile, undefined, undefined);
    }
    const diagnostic = this.pending as FirstError;
    this.pending = undefined;
    this.#reset();
    return [diagnostic, true];
  }

  #locate(file: string, line: number | undefined, column: number | undefined): void {
    const held = this.pending as FirstError;
    this.pending = {
      file: sourcePath(file, this.root),
      ...(line === undefined ? {} : { line }),
      ...(column === undefined ? {} : { column }),
      message: held.message,
      context: formatDiagnostic({ ...held, message: '' }).replace(/: $/, ''),
    };
  }

  #reset(): void {
    this.#include = [];
    this.#functionFile = undefined;
  }
}

function interesting(raw: string): boolean {
  return (
    raw.includes('rror') ||
    raw.includes('ERROR') ||
    raw.includes('FATAL') ||
    raw.includes('***') ||
    raw.includes('definition') ||
    raw.includes('reference')
  );
}

function parseLine(line: string, root: string): { diagnostic: FirstError; primary: boolean } | undefined {
  let m = compilerRe.exec(line);
  if (m) {
    const [, file = '', lineNo = '', col, message = ''] = m;
    const diagnostic: FirstError = {
      file: sourcePath(file, root),
      line: Number(lineNo),
      ...(col === undefined ? {} : { column: Number(col) }),
      message: clip(message.trim()),
    };
    return { diagnostic, primary: true };
  }
  m = driverRe.exec(line);
  if (m) return { diagnostic: { message: clip(`${m[1]}: ${(m[2] ?? '').trim()}`) }, primary: true };
  m = modpostRe.exec(line);
  if (m) return { diagnostic: { message: clip((m[1] ?? '').trim()) }, primary: true };
  m = linkerRe.exec(line);
  if (m) {
    const rest = m[2] ?? '';
    if (
      rest.startsWith('error: ') ||
      rest.includes('multiple definition of') ||
      rest.includes('undefined reference to')
    ) {
      return { diagnostic: { message: clip(`${m[1]}: ${relativizeIn(rest, root)}`) }, primary: true };
    }
    return undefined;
  }
  m = makeRe.exec(line);
  if (m) {
    const text = (m[4] ?? '').trim();
    if (makeNoiseRe.test(text)) return undefined;
    const message = clip(relativizeIn(text.replace(/\.?\s+Stop\.$/, ''), root));
    if (m[2] !== undefined) {
      return { diagnostic: { file: sourcePath(m[2], root), line: Number(m[3]), message }, primary: false };
    }
    return { diagnostic: { message }, primary: false };
  }
  return undefined;
}

/** A path under the build dir relative to it (the user's tree); anything else as printed. */
function sourcePath(file: string, root: string): string {
  if (root !== '' && file.startsWith(`${root}/`)) {
    const relative = posix.normalize(file.slice(root.length + 1));
    if (relative !== '..' && !relative.startsWith('../')) return relative;
  }
  return file;
}

/** Strips the build dir from paths inside a make or linker message. */
function relativizeIn(text: string, root: string): string {
  return root === '' ? text : text.split(`${root}/`).join('');
}

function clip(message: string): string {
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}…` : message;
}
