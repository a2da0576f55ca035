import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { KfarmError } from '../model/errors.js';
import { writeCpio, type CpioEntry } from './cpio.js';
import { initScript, type InitModule } from './init-script.js';

/** Where the host's statically linked busybox lives (Debian's busybox-static installs it as /bin/busybox). */
export const DEFAULT_BUSYBOX = '/bin/busybox';

export interface InitramfsModule {
  name: string;
  source: 'package' | 'kernel';
  /** Decompressed ELF bytes: busybox insmod cannot be relied on to unpack .ko.xz. */
  elf: Buffer;
  args: string[];
}

export interface InitramfsOptions {
  /** In load order. */
  modules: InitramfsModule[];
  missing?: Array<[string, string]>;
  busybox?: string;
}

/**
 * A gzip'ed newc cpio holding busybox, /init (init-script.ts) and the modules, each stored as
 * `/lib/modules/kfarm/<package|kernel>/<name>.ko` under its modinfo name.
 */
export async function buildInitramfs(options: InitramfsOptions): Promise<Buffer> {
  const busybox = await readBusybox(options.busybox ?? DEFAULT_BUSYBOX);
  const dirs = [
    'bin',
    'dev',
    'proc',
    'sys',
    'tmp',
    'sbin',
    'usr',
    'usr/bin',
    'usr/sbin',
    'lib',
    'lib/modules',
    'lib/modules/kfarm',
  ];
  const entries: CpioEntry[] = dirs.map((path) => ({ type: 'dir', path }));
  entries.push(
    { type: 'char', path: 'dev/console', major: 5, minor: 1, mode: 0o600 },
    { type: 'char', path: 'dev/null', major: 1, minor: 3, mode: 0o666 },
    { type: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
    { type: 'symlink', path: 'bin/sh', target: 'busybox' },
  );
  const init: InitModule[] = [];
  for (const source of ['package', 'kernel'] as const) {
    const modules = options.modules.filter((m) => m.source === source);
    if (modules.length === 0) continue;
    entries.push({ type: 'dir', path: `lib/modules/kfarm/${source}` });
    for (const m of modules)
      entries.push({ type: 'file', path: `lib/modules/kfarm/${source}/${m.name}.ko`, data: m.elf });
  }
  for (const m of options.modules)
    init.push({ name: m.name, source: m.source, path: `/lib/modules/kfarm/${m.source}/${m.name}.ko`, args: m.args });
  entries.push({
    type: 'file',
    path: 'init',
    data: Buffer.from(initScript({ modules: init, ...(options.missing ? { missing: options.missing } : {}) })),
    mode: 0o755,
  });
  return gzipSync(writeCpio(entries), { level: 1 });
}

async function readBusybox(path: string): Promise<Buffer> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new KfarmError(
      'KFARM_USAGE',
      `${path}: cannot read busybox (install busybox-static: scripts/setup-host.sh)`,
      { cause: error },
    );
  }
  if (!isStaticElf(bytes))
    throw new KfarmError(
      'KFARM_USAGE',
      `${path}: not a statically linked busybox (install busybox-static: scripts/setup-host.sh)`,
    );
  return bytes;
}

/** An x86_64 ELF executable without a PT_INTERP program header (a dynamic one would find no libc in the initramfs). */
export function isStaticElf(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  if (phoff + phnum * phentsize > elf.length) return false;
  for (let i = 0; i < phnum; i++) if (elf.readUInt32LE(phoff + i * phentsize) === 3) return false;
  return true;
}
