import { KfarmError } from '../model/errors.js';

/** What `images/runtime/eval-conf.sh` printed about one sourced dkms.conf. */
export interface ConfRecords {
  /** Every element DKMS keeps, by variable name then array index (plain variables sit at index 0). */
  vars: Map<string, Map<number, string>>;
  /** Indices i for which `$kernelver =~ MAKE_MATCH[i]`. */
  makeMatches: Set<number>;
  /** Indices i of PATCH that apply to this kernel, in array order. */
  patches: number[];
  /** Why BUILD_EXCLUSIVE_* excludes this kernel, one reason each; empty when it does not. */
  excluded: string[];
  /** `clang` / `lld` when the kernel was built with them: DKMS then appends CC=clang / LD=ld.lld. */
  toolchain: Set<string>;
}

/** Parses the NUL-separated record stream; fails on a truncated or unknown record rather than guess. */
export function parseConfRecords(output: Buffer | string): ConfRecords {
  const fields = (typeof output === 'string' ? output : output.toString('utf8')).split('\0');
  if (fields.at(-1) === '') fields.pop();
  const records: ConfRecords = {
    vars: new Map(),
    makeMatches: new Set(),
    patches: [],
    excluded: [],
    toolchain: new Set(),
  };
  let at = 0;
  const take = (): string => {
    const value = fields[at++];
    if (value === undefined) throw new KfarmError('KFARM_INTERNAL', 'truncated dkms.conf evaluation output');
    return value;
  };
  while (at < fields.length) {
    const kind = take();
    switch (kind) {
      case 'V': {
        const name = take();
        const index = Number(take());
        const value = take();
        let slots = records.vars.get(name);
        if (!slots) records.vars.set(name, (slots = new Map<number, string>()));
        slots.set(index, value);
        break;
      }
      case 'M':
        records.makeMatches.add(Number(take()));
        break;
      case 'P':
        records.patches.push(Number(take()));
        break;
      case 'X':
        records.excluded.push(take());
        break;
      case 'C':
        records.toolchain.add(take());
        break;
      default:
        throw new KfarmError(
          'KFARM_INTERNAL',
          `unexpected record ${JSON.stringify(kind)} in dkms.conf evaluation output`,
        );
    }
  }
  return records;
}
