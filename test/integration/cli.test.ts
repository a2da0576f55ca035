import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveTargets } from '../../src/plan/resolve.js';
import { cli, fixture, kfarmContainers, repoRoot, requireEngine, tempOut } from '../helpers/engine.js';

let docker: Docker;
let bookworm: string;

beforeAll(async () => {
  docker = await requireEngine();
  const targets = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  bookworm = targets.find((t) => t.release === 'bookworm')?.id as string;
});

const kfarm = (args: string[], env: Record<string, string> = {}) =>
  execa('node', [cli, ...args], { reject: false, env: { ...env, CI: 'true' }, cwd: repoRoot });

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

describe('kfarm CLI end to end', () => {
  it('builds the example, prints where the .ko is, exits 0', async () => {
    const out = await tempOut();
    const run = await kfarm(['build', 'examples/hello', '--target', bookworm, '--out', out, '--no-cache']);
    expect(run.stderr).toMatch(/building/);
    expect(run.exitCode, run.stderr).toBe(0);
    const ko = join(out, `dkms/hello/1.0/${bookworm.split('/')[2]}/x86_64/module/hello.ko`);
    expect(run.stdout).toContain(ko);
    expect(await exists(ko)).toBe(true);
  });

  it('a compile error exits 1 and says where make.log is', async () => {
    const out = await tempOut();
    const run = await kfarm(['build', fixture('broken'), '--target', bookworm, '--out', out]);
    expect(run.exitCode).toBe(1);
    expect(run.stdout).toMatch(
      /failed after .*: kf_broken\.c:7:19: 'this_symbol_does_not_exist' undeclared .*\(log: dkms\/kf_broken\/1\.0\/.*\/log\/make\.log\)/,
    );
  });

  const badConfs: [string, RegExp][] = [
    ['bad-noname', /^kfarm: .*test\/fixtures\/bad-noname\/dkms\.conf: no 'PACKAGE_NAME' directive$/],
    ['bad-noversion', /^kfarm: .*bad-noversion\/dkms\.conf: no 'PACKAGE_VERSION' directive$/],
    ['bad-nodest', /^kfarm: .*bad-nodest\/dkms\.conf: no 'DEST_MODULE_LOCATION' directive/],
    [
      'bad-location',
      /^kfarm: .*bad-location\/dkms\.conf: 'DEST_MODULE_LOCATION\[0\]' \("\/opt\/foo"\) does not begin with/,
    ],
    ['bad-koname', /^kfarm: .*bad-koname\/dkms\.conf: 'BUILT_MODULE_NAME\[0\]' \("foo\.ko"\) ends in '\.o' or '\.ko'$/],
    ['bad-syntax', /^kfarm: .*bad-syntax\/dkms\.conf: line 3: syntax error/],
    ['bad-missing', /^kfarm: .*bad-missing\/dkms\.conf: no such file/],
  ];
  for (const [name, message] of badConfs) {
    it(`${name}: one line naming the file and the problem, exit 2, nothing written`, async () => {
      const out = join(await tempOut(), 'out');
      const run = await kfarm(['build', fixture(name), '--target', bookworm, '--out', out]);
      expect(run.exitCode).toBe(2);
      expect(
        run.stderr
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('kfarm:')),
      ).toHaveLength(1);
      expect(run.stderr.trim().split('\n').pop()).toMatch(message);
      expect(await exists(out)).toBe(false);
      expect(await kfarmContainers(docker)).toEqual([]);
    });
  }

  it('an unknown kernel: exit 2 and how to list valid ones', async () => {
    const run = await kfarm(['build', 'examples/hello', '--target', 'debian/bookworm/6.1.0-999-amd64']);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toMatch(
      /^kfarm: unknown target debian\/bookworm\/6\.1\.0-999-amd64: .*kfarm targets --release bookworm/m,
    );
  });

  it('a malformed target, an unknown release and a bad flag value: exit 2', async () => {
    const malformed = await kfarm(['build', 'examples/hello', '--target', 'bookworm']);
    expect(malformed.exitCode).toBe(2);
    expect(malformed.stderr).toMatch(/--target "bookworm": expected <distro>\/<release>\/<kernel-release>/);
    const release = await kfarm(['build', 'examples/hello', '--target', 'debian/potato/2.2.0-1-386']);
    expect(release.exitCode).toBe(2);
    expect(release.stderr).toMatch(/unknown Debian release "potato"/);
    const jobs = await kfarm(['build', 'examples/hello', '--jobs', 'many']);
    expect(jobs.exitCode).toBe(2);
    expect(jobs.stderr).toMatch(/--jobs must be a positive whole number, got "many"/);
  });

  it('an unreachable engine: exit 3 naming the socket and how to start one', async () => {
    const run = await kfarm(['build', 'examples/hello', '--target', bookworm, '--out', join(await tempOut(), 'o')], {
      DOCKER_HOST: 'unix:///tmp/kfarm-no-such-engine.sock',
    });
    expect(run.exitCode).toBe(3);
    expect(run.stderr.trim()).toMatch(
      /^kfarm: cannot reach the container engine at unix:\/\/\/tmp\/kfarm-no-such-engine\.sock .*setup-host\.sh/,
    );
  });

  /** Starts a build of the slow fixture and resolves once its container is building. */
  async function startSlowBuild(out: string) {
    const child = execa('node', [cli, 'build', fixture('slow'), '--target', bookworm, '--out', out], {
      reject: false,
      env: { CI: 'true' },
    });
    let stderr = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`build never started:\n${stderr}`)), 300_000);
      child.stderr?.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        if (/building/.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    // Wrapped: a subprocess is thenable, and returning it bare from an async function would await it.
    return { child };
  }

  it('a run killed with SIGKILL leaves a container that the next run sweeps', async () => {
    const { child } = await startSlowBuild(await tempOut());
    child.kill('SIGKILL');
    await child;
    const left = await kfarmContainers(docker);
    expect(left).toHaveLength(1);
    const next = await kfarm(['build', 'examples/hello', '--target', bookworm, '--out', await tempOut()]);
    expect(next.exitCode).toBe(0);
    expect(await kfarmContainers(docker)).toEqual([]);
  });

  it('Ctrl-C mid-build removes the containers, writes a partial report and exits 130', async () => {
    const out = await tempOut();
    const { child } = await startSlowBuild(out);
    // The build container exists now; give PRE_BUILD a moment to be inside its sleep.
    expect((await kfarmContainers(docker)).length).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 1000));
    child.kill('SIGINT');
    const run = await child;
    expect(run.exitCode).toBe(130);
    expect(run.stderr).toMatch(/interrupted/);
    expect(await kfarmContainers(docker)).toEqual([]);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
    expect(report.partial).toBe(true);
    expect((await readdir(out)).filter((n) => n.startsWith('.kfarm-tmp'))).toEqual([]);
  });
});
