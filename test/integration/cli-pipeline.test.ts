import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type Docker from 'dockerode';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveTargets } from '../../src/plan/resolve.js';
import { cmsVerifyExit, makeSigningKey } from '../helpers/signing.js';
import { repoRoot, requireEngine, runKfarm, tempOut } from '../helpers/engine.js';

/**
 * The CLI as a user drives it: `kfarm targets`, then `kfarm build --verify --package` end to end, and the
 * signing-key checks that must stop a run before any build starts. Only the CLI, its exit codes, its output
 * and the files it writes are looked at (plus `resolveTargets`, which picks the default bookworm kernel).
 */

let docker: Docker;
/** The bookworm target of the default matrix, e.g. `debian/bookworm/6.1.0-57-amd64`, and its kernel release. */
let bookworm: string;
let kver: string;
let keyDir: string;
/** Subject CN of key pair "a": random, so a signature can only verify against this run's certificate. */
let signerCn: string;
const key = (name: string) => join(keyDir, name);

/** The fields of the built target's entry in report.json that these tests read. */
interface ReportTarget {
  id: string;
  status: string;
  verify: { status: string; log: string };
  packages: string[];
  artifacts: string[];
}

beforeAll(async () => {
  docker = await requireEngine();
  const targets = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  bookworm = targets.find((t) => t.release === 'bookworm')?.id as string;
  expect(bookworm).toMatch(/^debian\/bookworm\/\S+$/);
  kver = bookworm.split('/')[2] as string;

  keyDir = await mkdtemp(join(tmpdir(), 'kfarm-cli-keys-'));
  signerCn = `kfarm cli ${randomBytes(4).toString('hex')}`;
  for (const [name, cn] of [
    ['a', signerCn],
    ['b', 'someone else'],
  ]) {
    await makeSigningKey(keyDir, name as string, cn as string);
  }
  await writeFile(key('not-a-key.pem'), 'this is not a private key\n');
});

const kfarm = (args: string[], env: Record<string, string> = {}) => runKfarm(args, { env });

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );
const kfarmLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('kfarm:'));

/** Containers of one kfarm process (other kfarm runs and test files may share the engine). */
async function containersOf(pid: number): Promise<string[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [`kfarm.pid=${pid}`] } });
  return list.map((c) => `${c.Id.slice(0, 12)} ${c.Labels['kfarm.role'] ?? ''} ${c.Labels['kfarm.target'] ?? ''}`);
}

/**
 * Runs the CLI while polling the engine for containers labelled with its pid, without `docker events`:
 * `seen` is every container that existed while it ran, `left` what is left after it exited.
 */
async function watchedKfarm(args: string[]) {
  const started = performance.now();
  const child = kfarm(args);
  const pid = child.pid as number;
  const seen = new Set<string>();
  let done = false;
  const poll = (async () => {
    while (!done) {
      for (const c of await containersOf(pid)) seen.add(c);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const run = await child;
  const seconds = (performance.now() - started) / 1000;
  done = true;
  await poll;
  return { run, seconds, seen: [...seen], left: await containersOf(pid) };
}

/** The kernel's module-signature trailer: PKCS#7 DER, 12-byte `struct module_signature`, magic. */
const SIG_MAGIC = Buffer.from('~Module signature appended~\n');
const isSigned = (ko: Buffer) =>
  ko.length > SIG_MAGIC.length && ko.subarray(ko.length - SIG_MAGIC.length).equals(SIG_MAGIC);

/** Splits a signed module and checks its CMS signature against `certPem` with openssl; returns openssl's exit code. */
async function signatureVerifies(ko: Buffer, certPem: string): Promise<number> {
  const info = ko.subarray(ko.length - SIG_MAGIC.length - 12, ko.length - SIG_MAGIC.length);
  expect(info[2], 'id_type PKEY_ID_PKCS7').toBe(2);
  const sigLen = info.readUInt32BE(8);
  const sigStart = ko.length - SIG_MAGIC.length - 12 - sigLen;
  expect(sigStart).toBeGreaterThan(0);
  const content = ko.subarray(0, sigStart);
  expect(content.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
  return cmsVerifyExit(ko.subarray(sigStart, sigStart + sigLen), content, certPem);
}

describe('kfarm targets', () => {
  it(
    '--release bookworm --flavour amd64: a header row, then one row per bookworm amd64 kernel, the same as --json, ' +
      "including the default matrix's kernel",
    async () => {
      const table = await kfarm(['targets', '--release', 'bookworm', '--flavour', 'amd64']);
      expect(table.exitCode, table.stderr).toBe(0);
      const [header, ...rows] = table.stdout
        .trimEnd()
        .split('\n')
        .map((l) => l.trim().split(/\s+/));
      expect(header).toEqual(['TARGET', 'FLAVOUR', 'HEADERS', 'VERSION', 'SUITE']);
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) {
        expect(row, row.join(' ')).toHaveLength(5);
        const [id, flavour, headers, version, suite] = row as [string, string, string, string, string];
        expect(id).toMatch(/^debian\/bookworm\/[0-9][\w.+~-]*$/);
        expect(flavour).toBe('amd64');
        expect(headers).toBe(`linux-headers-${id.split('/')[2]}`);
        expect(version).toMatch(/^[0-9][\w.+~:-]*$/);
        expect(suite).toMatch(/^bookworm(-updates|-security|-backports)?$/);
      }
      const ids = rows.map((r) => r[0]);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids).toContain(bookworm);

      const json = await kfarm(['targets', '--release', 'bookworm', '--flavour', 'amd64', '--json']);
      expect(json.exitCode, json.stderr).toBe(0);
      const kernels = JSON.parse(json.stdout) as Record<string, unknown>[];
      expect(Array.isArray(kernels)).toBe(true);
      for (const k of kernels) {
        expect(k).toMatchObject({
          id: expect.stringMatching(/^debian\/bookworm\//),
          flavour: 'amd64',
          headersPackage: expect.stringMatching(/^linux-headers-/),
          headersVersion: expect.stringMatching(/^[0-9]/),
          suite: expect.stringMatching(/^bookworm/),
        });
      }
      // The table is the JSON, column for column, in the same order.
      expect(kernels.map((k) => [k.id, k.flavour, k.headersPackage, k.headersVersion, k.suite])).toEqual(rows);

      // --no-backports leaves out exactly the -backports kernels.
      const noBackports = await kfarm([
        'targets',
        '--release',
        'bookworm',
        '--flavour',
        'amd64',
        '--no-backports',
        '--json',
      ]);
      expect(noBackports.exitCode, noBackports.stderr).toBe(0);
      expect((JSON.parse(noBackports.stdout) as { id: string }[]).map((k) => k.id)).toEqual(
        kernels.filter((k) => !String(k.suite).endsWith('-backports')).map((k) => k.id),
      );
    },
  );

  it('an unknown release exits 2 with one line naming it; another distro exits 2', async () => {
    const release = await kfarm(['targets', '--release', 'nosuch']);
    expect(release.exitCode).toBe(2);
    expect(release.stdout).toBe('');
    expect(kfarmLines(release.stderr)).toHaveLength(1);
    expect(kfarmLines(release.stderr)[0]).toContain('nosuch');

    const distro = await kfarm(['targets', '--distro', 'fedora']);
    expect(distro.exitCode).toBe(2);
    expect(distro.stdout).toBe('');
    expect(kfarmLines(distro.stderr)).toHaveLength(1);
    expect(kfarmLines(distro.stderr)[0]).toContain('fedora');
  });
});

describe('kfarm build --verify --package deb,dkms --sign-key --sign-cert, end to end', () => {
  let out: string;
  let build: Awaited<ReturnType<typeof watchedKfarm>>;
  let target: ReportTarget;
  /** Passed with --verify-params: the module prints it when it loads. */
  const whom = `kf${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    out = await tempOut('kfarm-cli-pipeline-');
    build = await watchedKfarm([
      'build',
      'examples/hello',
      '--target',
      bookworm,
      '--out',
      out,
      '--no-cache',
      '--verify',
      '--verify-params',
      `whom=${whom}`,
      '--package',
      'deb,dkms',
      '--sign-key',
      key('a.key'),
      '--sign-cert',
      key('a.pem'),
    ]);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
    target = report.targets.find((t: { id: string }) => t.id === bookworm);
  });

  it('exits 0, built in a container that is gone afterwards, says the module loaded', () => {
    expect(build.run.exitCode, build.run.stderr).toBe(0);
    expect(build.run.stderr).toMatch(/building/);
    // The watcher sees build containers (so an empty `seen` elsewhere means something), and none is left.
    expect(build.seen.length).toBeGreaterThan(0);
    expect(build.left).toEqual([]);
    expect(target).toBeDefined();
    expect(target.status).toBe('built');
    const line = build.run.stdout.split('\n').find((l) => l.includes(bookworm));
    expect(line, build.run.stdout).toMatch(/\bloaded\b/);
  });

  it("report.json: verify.status loaded, verify.log holds the booted kernel and the module's own load and unload lines", async () => {
    expect(target.verify, JSON.stringify(target.verify)).toMatchObject({ status: 'loaded', log: expect.any(String) });
    expect(target.verify.log).not.toMatch(/^\//);
    const log = await readFile(join(out, target.verify.log), 'utf8');
    expect(log).toContain('hello');
    expect(log).toMatch(new RegExp(`Linux version ${kver.replace(/[.+]/g, '\\$&')} `));
    expect(log).toMatch(/\] hello: loaded$/m);
    expect(log).toMatch(new RegExp(`\\] hello: hello, ${whom}$`, 'm'));
    expect(log).toMatch(/\] hello: unloaded$/m);
  });

  it('summary.md shows the load result', async () => {
    const row = (await readFile(join(out, 'summary.md'), 'utf8')).split('\n').find((l) => l.includes(bookworm));
    expect(row).toMatch(/\bloaded\b/);
  });

  it("junit.xml shows the load result in the target's test case", async () => {
    const junit = await readFile(join(out, 'junit.xml'), 'utf8');
    const start = junit.indexOf(`name="${bookworm}"`);
    expect(start, junit).toBeGreaterThan(-1);
    const end = junit.indexOf('<testcase', start);
    const testcase = junit.slice(start, end === -1 ? undefined : end);
    // make.log (in <system-out>) never says "loaded" or "verify.log"; a load result must come from verify.
    expect(testcase, testcase).toMatch(/verif|\bloaded\b/i);
  });

  it('report.json lists the packages, relative paths under packages/, all existing, and stdout names them', async () => {
    const packages = target.packages;
    expect(packages).toEqual(expect.any(Array));
    expect(packages.some((p) => p.endsWith('.deb'))).toBe(true);
    expect(packages.some((p) => p.endsWith('.dkms.tar.gz'))).toBe(true);
    for (const p of packages) {
      expect(p).toMatch(/^packages\/[^/]+$/);
      expect(await exists(join(out, p)), p).toBe(true);
      expect(build.run.stdout).toContain(p.slice('packages/'.length));
    }
    expect((await readdir(join(out, 'packages'))).sort()).toEqual(
      packages.map((p) => p.slice('packages/'.length)).sort(),
    );
    expect((await readdir(out)).filter((n) => n.startsWith('.kfarm-tmp'))).toEqual([]);
  });

  it("the .deb is hello-modules-<kver>, carries hello.ko in the kernel's updates/dkms, signed with the given key", async () => {
    const deb = join(out, target.packages.find((p) => p.endsWith('.deb')) as string);
    const info = await execa('dpkg-deb', ['-I', deb]);
    expect(info.stdout).toMatch(new RegExp(`^ Package: hello-modules-${kver.replace(/[.+]/g, '\\$&')}$`, 'm'));
    expect(info.stdout).toMatch(new RegExp(`^ Depends: .*\\blinux-image-${kver.replace(/[.+]/g, '\\$&')}\\b`, 'm'));
    const member = `./lib/modules/${kver}/updates/dkms/hello.ko`;
    expect((await execa('dpkg-deb', ['-c', deb])).stdout).toContain(member);
    const ko = Buffer.from(
      (
        await execa('sh', ['-c', 'dpkg-deb --fsys-tarfile "$1" | tar -xO "$2"', 'sh', deb, member], {
          encoding: 'buffer',
          stripFinalNewline: false,
        })
      ).stdout,
    );
    expect(isSigned(ko)).toBe(true);
    expect(await signatureVerifies(ko, key('a.pem'))).toBe(0);
    expect(await signatureVerifies(ko, key('b.pem'))).not.toBe(0);
  });

  it(
    'the DKMS tarball has dkms_main_tree/<kver>/x86_64/module/hello.ko for this kernel, signed; ' +
      'the DKMS tree stays unsigned',
    async () => {
      const tarball = join(out, target.packages.find((p) => p.endsWith('.dkms.tar.gz')) as string);
      const member = `./dkms_main_tree/${kver}/x86_64/module/hello.ko`;
      expect((await execa('tar', ['-tzf', tarball])).stdout.split('\n')).toContain(member);
      const ko = Buffer.from(
        (await execa('tar', ['-xzOf', tarball, member], { encoding: 'buffer', stripFinalNewline: false })).stdout,
      );
      expect(ko.includes(Buffer.from(`vermagic=${kver} `))).toBe(true);
      expect(isSigned(ko)).toBe(true);
      expect(await signatureVerifies(ko, key('a.pem'))).toBe(0);
      const tree = await readFile(join(out, target.artifacts.find((a) => a.endsWith('/hello.ko')) as string));
      expect(tree.includes(Buffer.from(`vermagic=${kver} `))).toBe(true);
      expect(isSigned(tree)).toBe(false);
    },
  );
});

describe('signing options are checked before any build starts', () => {
  /** A build that must stop at once: exit 2, one `kfarm:` line, nothing written, no container, no build line. */
  async function rejected(args: string[]): Promise<string> {
    const out = join(await tempOut('kfarm-cli-sign-'), 'out');
    const { run, seconds, seen, left } = await watchedKfarm([
      'build',
      'examples/hello',
      '--target',
      bookworm,
      '--out',
      out,
      '--no-cache',
      ...args,
    ]);
    expect(run.exitCode, run.stderr).toBe(2);
    const lines = kfarmLines(run.stderr);
    expect(lines, run.stderr).toHaveLength(1);
    expect(run.stderr).not.toMatch(/building|queued|booting/);
    expect(seconds).toBeLessThan(10);
    expect(seen).toEqual([]);
    expect(left).toEqual([]);
    expect(await exists(out)).toBe(false);
    return lines[0] as string;
  }

  it('a --sign-key that is not a key: exit 2 naming the key file, before any build', async () => {
    const line = await rejected(['--package', 'deb', '--sign-key', key('not-a-key.pem'), '--sign-cert', key('a.pem')]);
    expect(line).toContain(key('not-a-key.pem'));
  });

  it('a key and a certificate that do not belong together (either way round): exit 2 before any build', async () => {
    for (const [k, c] of [
      ['a.key', 'b.pem'],
      ['b.key', 'a.pem'],
    ]) {
      const line = await rejected([
        '--package',
        'deb',
        '--sign-key',
        key(k as string),
        '--sign-cert',
        key(c as string),
      ]);
      expect(line.includes(key(k as string)) || line.includes(key(c as string)), line).toBe(true);
    }
  });

  it('--sign-key without --package: exit 2, one line', async () => {
    const both = await rejected(['--sign-key', key('a.key'), '--sign-cert', key('a.pem')]);
    expect(both).toMatch(/--sign-key/);
    expect(both).toMatch(/--package/);
    const keyOnly = await rejected(['--sign-key', key('a.key')]);
    expect(keyOnly).toMatch(/--sign-key/);
  });
});
