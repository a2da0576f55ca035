import { cp, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { runFarm } from '../../../src/farm/run.js';
import { isKfarmError } from '../../../src/model/errors.js';
import type { Target } from '../../../src/model/result.js';
import { example, kfarmContainers, requireEngine, runKfarm, supportedTarget, tempOut } from '../../helpers/engine.js';
import type Docker from 'dockerode';

// Issue: input errors that looked like hangs. An endless loop in dkms.conf made every target wait its whole
// --timeout (30 min each); a FIFO or socket in the source tree hung the copy-in; a FIFO named dkms.conf hung
// kfarm in open(2), deaf to Ctrl-C; a 10 MB dkms.conf took 24 s to syntax-check. Each is now a prompt exit 2.
let docker: Docker;
let target: Target;

beforeAll(async () => {
  docker = await requireEngine();
  target = await supportedTarget('bookworm');
});

const kfarm = (args: string[]) => runKfarm(args, { timeout: 60_000 });

async function helloCopy(): Promise<string> {
  const src = join(await tempOut(), 'src');
  await cp(example('hello'), src, { recursive: true });
  return src;
}

describe('input that used to hang kfarm', () => {
  it('an endless loop in dkms.conf is a config error within the evaluation limit, not a 30-minute wait', async () => {
    const src = await helloCopy();
    await writeFile(
      join(src, 'dkms.conf'),
      `${await readFile(join(src, 'dkms.conf'), 'utf8')}\nwhile true; do :; done\n`,
    );
    const started = Date.now();
    const error = await runFarm({
      source: src,
      out: join(await tempOut(), 'out'),
      targets: [target],
      cache: false,
      evaluationTimeoutMs: 5_000,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isKfarmError(error, 'KFARM_CONFIG_INVALID'), String(error)).toBe(true);
    expect((error as Error).message).toMatch(
      /dkms\.conf: sourcing it did not finish within 5 s \(an endless loop\?\)$/,
    );
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(await kfarmContainers(docker)).toEqual([]);
  });

  it('a FIFO in the source tree is named, exit 2, before anything runs', async () => {
    const src = await helloCopy();
    await execa('mkfifo', [join(src, 'pipe')]);
    const run = await kfarm(['build', src, '--target', target.id, '--out', join(await tempOut(), 'out')]);
    expect(run.exitCode, run.stderr).toBe(2);
    expect(run.stderr.trim()).toMatch(
      /^kfarm: .*src\/pipe: a FIFO in the module source tree \(DKMS copies regular files, directories and symlinks only\)$/,
    );
  });

  it('a socket in the source tree is named, exit 2', async () => {
    const src = await helloCopy();
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(join(src, 'sock'), resolve));
    try {
      const run = await kfarm(['build', src, '--target', target.id, '--out', join(await tempOut(), 'out')]);
      expect(run.exitCode, run.stderr).toBe(2);
      expect(run.stderr.trim()).toMatch(/^kfarm: .*src\/sock: a socket in the module source tree/);
    } finally {
      server.close();
    }
  });

  it('a FIFO named dkms.conf is refused at once (it is never opened for a blocking read)', async () => {
    const src = await helloCopy();
    await execa('rm', [join(src, 'dkms.conf')]);
    await execa('mkfifo', [join(src, 'dkms.conf')]);
    const started = Date.now();
    const run = await kfarm(['build', src, '--target', target.id, '--out', join(await tempOut(), 'out')]);
    expect(run.exitCode, run.stderr).toBe(2);
    expect(run.stderr.trim()).toMatch(/^kfarm: .*src\/dkms\.conf: not a regular file$/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('a 10 MB dkms.conf is syntax-checked in seconds (read as a file, not a byte at a time from a pipe)', async () => {
    const src = await helloCopy();
    const padding = '# padding\n'.repeat(1_000_000);
    await writeFile(
      join(src, 'dkms.conf'),
      `${await readFile(join(src, 'dkms.conf'), 'utf8')}${padding}if [ 1 ]; then\n`,
    );
    const started = Date.now();
    const run = await kfarm(['build', src, '--target', target.id, '--out', join(await tempOut(), 'out')]);
    expect(run.exitCode, run.stderr).toBe(2);
    expect(run.stderr.trim()).toMatch(/dkms\.conf: line 1000\d+: syntax error: unexpected end of file$/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
