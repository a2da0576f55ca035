import { readdir, readFile } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import { KfarmError } from '../model/errors.js';
import { parseModinfo } from '../dkms/modinfo.js';
import { splitDepends } from './deps.js';
import { normaliseModuleName } from './params.js';

/** Bumped when the shape changes, so an old index is rebuilt rather than misread. */
export const MODULE_INDEX_FORMAT = 1;

/**
 * A kernel's modules by their modinfo `name=`, with their `depends=`. Debian's image packages do not ship
 * modules.dep (depmod runs in postinst), so this is what dependency resolution reads. Built once per kernel
 * when its package is unpacked and stored next to it (`modules.json`).
 */
export interface ModuleIndex {
  format: typeof MODULE_INDEX_FORMAT;
  kernel: string;
  /** name → path relative to `/lib/modules/<kver>` (e.g. `kernel/drivers/media/mc/mc.ko.xz`) and dependencies. */
  modules: Record<string, { path: string; depends: string[] }>;
}

const MODULE_FILE = /\.ko(\.xz|\.gz|\.zst)?$/;
/** xz files decompressed per `xz -dc` run: a batch's output is held in memory (trixie: ~100 KiB per module). */
const XZ_BATCH = 400;

export async function buildModuleIndex(modulesDir: string, kernel: string, signal?: AbortSignal): Promise<ModuleIndex> {
  const files = (await walk(modulesDir)).filter((f) => MODULE_FILE.test(f)).sort();
  const modules: ModuleIndex['modules'] = {};
  const add = (file: string, elf: Buffer): void => {
    let info: Map<string, string[]>;
    try {
      info = parseModinfo(elf);
    } catch (error) {
      throw new KfarmError('KFARM_MALFORMED', `${file}: ${(error as Error).message}`, { cause: error });
    }
    const name = normaliseModuleName(info.get('name')?.[0] ?? basename(file).replace(MODULE_FILE, ''));
    modules[name] ??= { path: relative(modulesDir, file), depends: splitDepends(info.get('depends')) };
  };

  const xz = files.filter((f) => f.endsWith('.ko.xz'));
  const batches: string[][] = [];
  for (let i = 0; i < xz.length; i += XZ_BATCH) batches.push(xz.slice(i, i + XZ_BATCH));
  const others = files.filter((f) => !f.endsWith('.ko.xz'));
  // Two xz processes at a time; plain files are read alongside.
  await pool(
    [
      ...batches.map(
        (batch) => () =>
          decompressXzBatch(batch, signal).then((elves) => batch.forEach((f, i) => add(f, elves[i] as Buffer))),
      ),
    ],
    2,
  );
  await pool(
    others.map((file) => async () => add(file, await readModuleFile(file, signal))),
    16,
  );
  return {
    format: MODULE_INDEX_FORMAT,
    kernel,
    modules: Object.fromEntries(Object.entries(modules).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
  };
}

export function isModuleIndex(value: unknown, kernel: string): value is ModuleIndex {
  const index = value as Partial<ModuleIndex> | null;
  return (
    typeof index === 'object' &&
    index !== null &&
    index.format === MODULE_INDEX_FORMAT &&
    index.kernel === kernel &&
    typeof index.modules === 'object'
  );
}

/** A module file's ELF bytes, decompressed as the kernel's own `kmod` would. */
export async function readModuleFile(file: string, signal?: AbortSignal): Promise<Buffer> {
  if (file.endsWith('.ko')) return readFile(file);
  if (file.endsWith('.ko.gz')) return gunzipSync(await readFile(file));
  const tool = file.endsWith('.ko.xz') ? 'xz' : file.endsWith('.ko.zst') ? 'zstd' : undefined;
  if (!tool) throw new KfarmError('KFARM_MALFORMED', `${file}: not a kernel module file`);
  const { stdout } = await execa(tool, ['-dcq', file], {
    encoding: 'buffer',
    stripFinalNewline: false,
    maxBuffer: 1 << 30,
    ...(signal ? { cancelSignal: signal } : {}),
  });
  return Buffer.from(stdout);
}

/**
 * One `xz --list` for the sizes and one `xz -dc` for the bytes of many files, split back by size: two
 * processes instead of one per module (a trixie kernel has over 4000).
 */
async function decompressXzBatch(files: string[], signal?: AbortSignal): Promise<Buffer[]> {
  const input = files.map((f) => `${f}\0`).join('');
  const options = { input, maxBuffer: 1 << 30, ...(signal ? { cancelSignal: signal } : {}) };
  const list = await execa('xz', ['--robot', '--list', '--files0'], options);
  const sizes = list.stdout
    .split('\n')
    .filter((line) => line.startsWith('file\t'))
    .map((line) => Number(line.split('\t')[4]));
  if (sizes.length !== files.length || sizes.some((n) => !Number.isSafeInteger(n))) {
    throw new KfarmError('KFARM_MALFORMED', `xz --list: expected sizes for ${files.length} files, got ${sizes.length}`);
  }
  const { stdout } = await execa('xz', ['-dc', '--files0'], {
    ...options,
    encoding: 'buffer',
    stripFinalNewline: false,
  });
  const bytes = Buffer.from(stdout);
  const total = sizes.reduce((a, b) => a + b, 0);
  if (bytes.length !== total)
    throw new KfarmError(
      'KFARM_MALFORMED',
      `xz -dc: expected ${total} bytes for ${files.length} files, got ${bytes.length}`,
    );
  const out: Buffer[] = [];
  let at = 0;
  for (const size of sizes) {
    out.push(bytes.subarray(at, at + size));
    at += size;
  }
  return out;
}

async function walk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map(async (entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return walk(path);
      return entry.isFile() ? [path] : [];
    }),
  );
  return nested.flat();
}

async function pool(tasks: Array<() => Promise<void>>, size: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const task = tasks[next++] as () => Promise<void>;
      await task();
    }
  };
  await Promise.all(Array.from({ length: Math.min(size, tasks.length) }, worker));
}
