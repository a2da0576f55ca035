import { readFile } from 'node:fs/promises';
import { KfarmError } from '../model/errors.js';

/**
 * Reads the `.modinfo` section of a kernel module (ELF64 little-endian, as on x86_64): `key=value` strings
 * separated by NULs. Returns every value of every key (`depends`, `alias`… may repeat).
 */
export function parseModinfo(elf: Buffer): Map<string, string[]> {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw new KfarmError('KFARM_MALFORMED', 'not an ELF file');
  if (elf[4] !== 2 || elf[5] !== 1) throw new KfarmError('KFARM_MALFORMED', 'not a little-endian ELF64 file');
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const shstrndx = elf.readUInt16LE(0x3e);
  if (shoff + shnum * shentsize > elf.length) throw new KfarmError('KFARM_MALFORMED', 'truncated ELF section table');
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      name: elf.readUInt32LE(at),
      offset: Number(elf.readBigUInt64LE(at + 0x18)),
      size: Number(elf.readBigUInt64LE(at + 0x20)),
    };
  };
  const names = section(shstrndx);
  const info = new Map<string, string[]>();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameEnd = elf.indexOf(0, names.offset + s.name);
    if (elf.toString('latin1', names.offset + s.name, nameEnd) !== '.modinfo') continue;
    if (s.offset + s.size > elf.length) throw new KfarmError('KFARM_MALFORMED', 'truncated .modinfo section');
    for (const entry of elf.toString('utf8', s.offset, s.offset + s.size).split('\0')) {
      const eq = entry.indexOf('=');
      if (eq <= 0) continue;
      const key = entry.slice(0, eq);
      info.set(key, [...(info.get(key) ?? []), entry.slice(eq + 1)]);
    }
    return info;
  }
  throw new KfarmError('KFARM_MALFORMED', 'no .modinfo section');
}

export async function readModinfo(path: string): Promise<Map<string, string[]>> {
  return parseModinfo(await readFile(path));
}

/** The kernel release a module was built for: the first word of its vermagic. */
export function vermagicRelease(info: Map<string, string[]>): string | undefined {
  return info.get('vermagic')?.[0]?.split(' ')[0];
}
