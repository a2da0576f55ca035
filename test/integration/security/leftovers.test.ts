import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireEngine, runKfarm, supportedTarget, tempOut, tmpfsMount, unmountAll } from '../../helpers/engine.js';

// Issue: a killed run's staging directories stayed in --out forever; bad --out values ended in an internal
// error and a stack trace.
let target: string;

beforeAll(async () => {
  await requireEngine();
  target = (await supportedTarget('bookworm')).id;
});

afterAll(unmountAll);

const kfarm = (args: string[]) => runKfarm(args);

/** A pid that ran and is gone now. */
async function deadPid(): Promise<number> {
  const child = execa('true');
  await child;
  return child.pid as number;
}

describe('leftovers and unusable output directories', () => {
  it("the next run sweeps a dead run's .kfarm-tmp-* from --out, and leaves a live run's alone", async () => {
    const out = await tempOut();
    const dead = join(out, '.kfarm-tmp-deadbeef0000');
    const live = join(out, '.kfarm-tmp-livebeef0000');
    await mkdir(join(dead, '0'), { recursive: true });
    await writeFile(join(dead, '.kfarm-owner'), JSON.stringify({ pid: await deadPid(), host: hostname() }));
    await mkdir(live);
    await writeFile(join(live, '.kfarm-owner'), JSON.stringify({ pid: process.pid, host: hostname() }));
    const run = await kfarm(['build', 'examples/hello', '--target', target, '--out', out]);
    expect(run.exitCode, run.stderr).toBe(0);
    const left = (await readdir(out)).filter((n) => n.startsWith('.kfarm-tmp-'));
    expect(left).toEqual(['.kfarm-tmp-livebeef0000']);
  });

  it('--out that is a file, that is /, or on a read-only file system: one line, exit 2', async () => {
    const file = join(await tempOut(), 'file');
    await writeFile(file, '');
    const asFile = await kfarm(['build', 'examples/hello', '--target', target, '--out', file]);
    expect(asFile.exitCode, asFile.stderr).toBe(2);
    expect(asFile.stderr.trim()).toBe(`kfarm: --out ${file}: not a directory`);
    const root = await kfarm(['build', 'examples/hello', '--target', target, '--out', '/']);
    expect(root.exitCode, root.stderr).toBe(2);
    expect(root.stderr.trim()).toBe('kfarm: --out /: refusing to write a build into /');
    const ro = await tmpfsMount('size=1m,ro');
    const readOnly = await kfarm(['build', 'examples/hello', '--target', target, '--out', join(ro, 'out')]);
    expect(readOnly.exitCode, readOnly.stderr).toBe(2);
    expect(readOnly.stderr.trim()).toBe(`kfarm: cannot write ${join(ro, 'out')}: read-only file system`);
  });

  it('a missing source, or one that is a file: one line, exit 2', async () => {
    const missing = await kfarm(['build', '/nonexistent/src', '--target', target]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr.trim()).toBe(
      'kfarm: /nonexistent/src: no such directory (expected a DKMS module source tree)',
    );
    const file = await kfarm(['build', 'README.md', '--target', target]);
    expect(file.exitCode).toBe(2);
    expect(file.stderr.trim()).toBe('kfarm: README.md: not a directory (expected a DKMS module source tree)');
  });
});
