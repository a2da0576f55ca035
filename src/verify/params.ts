import { KfarmError } from '../model/errors.js';

/**
 * `--verify-params`: module parameters for the load test, as one string of whitespace-separated words.
 *
 *   name=value           passed to every module of the package
 *   module.name=value    passed only to `module` (its modinfo name, `-` and `_` alike): one of the package's
 *                        modules or a kernel module loaded as their dependency
 *   name / module.name   a bare boolean parameter (the kernel reads it as `name=1`)
 *
 * A value may be double-quoted to hold spaces (`whom="a b"`); the quotes reach the kernel, which removes them,
 * exactly as with `insmod m.ko whom="a b"`. Later words win over earlier ones only in the kernel's own sense
 * (it applies parameters in order).
 */
export interface VerifyParam {
  /** Normalised module name (`-` → `_`), or undefined for "every package module". */
  module?: string;
  /** What insmod gets, e.g. `whom=kfarm` or `whom="a b"`. */
  arg: string;
  /** The word as the user wrote it, for error messages. */
  word: string;
}

const NAME = /^[A-Za-z0-9_-]+$/;

export function parseVerifyParams(text: string | undefined): VerifyParam[] {
  if (text === undefined) return [];
  const params: VerifyParam[] = [];
  for (const word of splitWords(text)) {
    const eq = word.indexOf('=');
    const key = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? undefined : word.slice(eq + 1);
    const dot = key.indexOf('.');
    const module = dot < 0 ? undefined : key.slice(0, dot);
    const name = dot < 0 ? key : key.slice(dot + 1);
    if (!NAME.test(name) || (module !== undefined && !NAME.test(module))) {
      throw usage(
        `${JSON.stringify(word)}: expected name=value or module.name=value (names are letters, digits, _ and -)`,
      );
    }
    if (value !== undefined && /[\0\n\r]/.test(value))
      throw usage(`${JSON.stringify(word)}: a value cannot hold a NUL or a line break`);
    params.push({
      ...(module !== undefined ? { module: normaliseModuleName(module) } : {}),
      arg: value === undefined ? name : `${name}=${value}`,
      word,
    });
  }
  return params;
}

/**
 * The insmod arguments of each module. `packageModules` get the unprefixed parameters; a prefixed one must
 * name a package module or one of `dependencies`, else it is a usage error (a typo would otherwise be silently
 * ignored by the kernel, or worse, by kfarm).
 */
export function assignParams(
  params: readonly VerifyParam[],
  packageModules: readonly string[],
  dependencies: readonly string[],
): Map<string, string[]> {
  const result = new Map<string, string[]>();
  const known = new Set([...packageModules, ...dependencies].map(normaliseModuleName));
  for (const param of params) {
    if (param.module !== undefined && !known.has(param.module)) {
      const names = [...packageModules].map(normaliseModuleName).join(', ');
      throw usage(
        `${JSON.stringify(param.word)}: no module ${param.module} among the package's modules (${names})` +
          `${dependencies.length ? ` or their dependencies (${dependencies.map(normaliseModuleName).join(', ')})` : ''}`,
      );
    }
    const targets = param.module !== undefined ? [param.module] : packageModules.map(normaliseModuleName);
    for (const target of targets) result.set(target, [...(result.get(target) ?? []), param.arg]);
  }
  return result;
}

/** The kernel treats `-` and `_` in module names alike and reports `_`. */
export function normaliseModuleName(name: string): string {
  return name.replace(/-/g, '_');
}

/** Splits on whitespace outside double quotes; the quotes stay in the word. */
function splitWords(text: string): string[] {
  const words: string[] = [];
  let current = '';
  let quoted = false;
  let inWord = false;
  for (const char of text) {
    if (char === '"') {
      quoted = !quoted;
      current += char;
      inWord = true;
    } else if (!quoted && /\s/.test(char)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += char;
      inWord = true;
    }
  }
  if (quoted) throw usage(`unterminated double quote in ${JSON.stringify(text)}`);
  if (inWord) words.push(current);
  return words;
}

function usage(problem: string): KfarmError {
  return new KfarmError('KFARM_USAGE', `--verify-params: ${problem}`);
}
