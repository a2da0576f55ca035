import { createHash } from 'node:crypto';
import { cp, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveTargets } from '../../../src/plan/resolve.js';
import { example, kfarmContainers, repoRoot, requireEngine, runKfarm, tempOut } from '../../helpers/engine.js';
import type Docker from 'dockerode';

// Issue: PACKAGE_NAME/PACKAGE_VERSION name directories. A dkms.conf whose names climb out of --out replaced
// another project's DKMS tree (its .ko swapped, its other files deleted) and wrote make.log outside --out;
// control characters in a name reached the terminal raw. Names are checked where dkms.conf is read.
let docker: Docker;
let target: string;
let kernel: string;

beforeAll(async () => {
  docker = await requireEngine();
  const targets = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  target = targets.find((t) => t.release === 'bookworm')?.id as string;
  kernel = target.split('/')[2] as string;
});

const kfarm = (args: string[], cwd: string) => runKfarm(args, { cwd });

/** Every file under `dir` with its hash: the victim's tree must come out of the attack byte for byte. */
async function fingerprint(dir: string): Promise<Record<string, string>> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const result: Record<string, string> = {};
  for (const e of entries.filter((x) => x.isFile())) {
    const path = join(e.parentPath, e.name);
    result[path] = createHash('sha256')
      .update(await readFile(path))
      .digest('hex');
  }
  return result;
}

/** The hello example with its dkms.conf's first two lines replaced. */
async function attacker(root: string, name: string, version: string): Promise<string> {
  const src = join(root, 'attacker', 'src');
  await cp(example('hello'), src, { recursive: true });
  const conf = (await readFile(join(src, 'dkms.conf'), 'utf8'))
    .split('\n')
    .filter((l) => !/^PACKAGE_(NAME|VERSION)=/.test(l));
  const names = [`PACKAGE_NAME=${name}`, `PACKAGE_VERSION=${version}`, 'BUILT_MODULE_NAME[0]="hello"'];
  await writeFile(join(src, 'dkms.conf'), [...names, 'DEST_MODULE_NAME[0]="goodmod"', ...conf].join('\n'));
  return src;
}

async function victimTree(root: string): Promise<string> {
  const dir = join(root, 'victim/out/dkms/goodmod/2.0', kernel, 'x86_64');
  await mkdir(join(dir, 'module'), { recursive: true });
  await mkdir(join(dir, 'log'), { recursive: true });
  await writeFile(join(dir, 'module/goodmod.ko'), "the victim project's own module");
  await writeFile(join(dir, 'module/notes.txt'), 'an unrelated file');
  await writeFile(join(dir, 'log/make.log'), "the victim's log");
  return join(root, 'victim');
}

describe('path traversal through dkms.conf names', () => {
  it('a PACKAGE_NAME climbing into another output is refused (exit 2) and the victim tree is untouched', async () => {
    const root = await tempOut();
    const victim = await victimTree(root);
    const before = await fingerprint(victim);
    const src = await attacker(root, '"../../../victim/out/dkms/goodmod"', '"2.0"');
    const out = join(root, 'attacker', 'out');
    const run = await kfarm(['build', src, '--target', target, '--out', out, '--no-cache'], root);
    expect(run.exitCode, run.stderr).toBe(2);
    const lines = run.stderr.split('\n').filter((l) => l.startsWith('kfarm:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /dkms\.conf: 'PACKAGE_NAME' \("\.\.\/\.\.\/\.\.\/victim\/out\/dkms\/goodmod"\) must be one name/,
    );
    expect(await fingerprint(victim)).toEqual(before);
    expect(
      await stat(out).then(
        () => true,
        () => false,
      ),
    ).toBe(false);
    expect(await kfarmContainers(docker)).toEqual([]);
  });

  it('a PACKAGE_VERSION climbing out of --out writes nothing anywhere, not even make.log', async () => {
    const root = await tempOut();
    const src = await attacker(root, '"hello"', '"../../../../x"');
    const out = join(root, 'attacker', 'out');
    const run = await kfarm(['build', src, '--target', target, '--out', out, '--no-cache'], root);
    expect(run.exitCode, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/'PACKAGE_VERSION' \("\.\.\/\.\.\/\.\.\/\.\.\/x"\) must be one name/);
    expect(await readdir(root)).toEqual(['attacker']);
    expect(await readdir(join(root, 'attacker'))).toEqual(['src']);
  });

  it('newlines and terminal escapes in PACKAGE_NAME are refused and never reach the terminal raw', async () => {
    const root = await tempOut();
    const src = await attacker(root, `$'evil\\n\\x1b]0;pwned\\x07name'`, '"1.0"');
    const run = await kfarm(['build', src, '--target', target, '--out', join(root, 'out'), '--no-cache'], root);
    expect(run.exitCode, run.stderr).toBe(2);
    expect(run.stderr).not.toContain('\x1b');
    expect(run.stderr).not.toContain('\x07');
    const lines = run.stderr.split('\n').filter((l) => l.startsWith('kfarm:'));
    expect(lines).toHaveLength(1);
    // DKMS's reading of values word-splits the name: the newline arrives as a blank, the escapes as they were.
    expect(lines[0]).toMatch(/'PACKAGE_NAME' \("evil \\u001b\]0;pwned\\u0007name"\) must be one name/);
  });
});
