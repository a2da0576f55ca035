import { cp, lstat, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KernelTarget } from '../../src/model/result.js';
import { resolveTargets } from '../../src/plan/resolve.js';
import { example, requireEngine, runKfarm, tempOut } from '../helpers/engine.js';

/**
 * `kfarm publish` against the real clients, each in a container of the target release with Debian's archive
 * reachable, the repository given to it as a directory (`file:`) and its signature checked with the key the
 * test generated (no `trusted=yes`): apt installs a per-kernel package and follows the kernel through `apt
 * upgrade`, dpkg installs the `-dkms` package with no compiler and the release's own dkms builds another kernel
 * from its source, dnf installs the .rpm with gpgcheck, and each client refuses a tampered index.
 */

const EPOCH = '1700000000';
let bookworm: KernelTarget[];
let trixie: KernelTarget[];
let keyFile: string;
let work: string;
/** bookworm's older kernel + trixie's newest; then bookworm's newest, as a nightly run would add it. */
let outOld: string;
let outNew: string;
const containers: string[] = [];

async function buildAndPackage(targets: KernelTarget[]): Promise<string> {
  const out = await tempOut('kfarm-publish-');
  const args = ['build', example('hello'), '--out', out, '--package', 'deb,rpm,dkms-deb'];
  const run = await runKfarm([...args, ...targets.flatMap((t) => ['--target', t.id])], {
    env: { SOURCE_DATE_EPOCH: EPOCH },
  });
  expect(run.exitCode, run.stderr).toBe(0);
  return out;
}

async function generateKey(dir: string): Promise<string> {
  const home = join(dir, 'gnupg');
  await execa('mkdir', ['-m', '700', home]);
  const gpg = (args: string[]) => execa('gpg', ['--batch', '--homedir', home, ...args]);
  await gpg(['--passphrase', '', '--quick-gen-key', 'kfarm tests <tests@kfarm.invalid>', 'rsa3072', 'sign', 'never']);
  const file = join(dir, 'archive.key');
  await writeFile(file, (await gpg(['--armor', '--export-secret-keys'])).stdout);
  return file;
}

function publish(args: string[], epoch = EPOCH) {
  return runKfarm(['publish', ...args, '--gpg-key', keyFile], { env: { SOURCE_DATE_EPOCH: epoch } });
}

/** A client machine: a container of the release's kfarm base image, with network for Debian's archive. */
async function client(release: string): Promise<string> {
  const run = await execa('docker', [
    'run',
    '-d',
    '--label',
    'kfarm.test=publish',
    `kfarm/debian:${release}`,
    'sleep',
    '3600',
  ]);
  const id = run.stdout.trim();
  containers.push(id);
  return id;
}

function sh(id: string, script: string, input?: string | Buffer) {
  return execa(
    'docker',
    ['exec', '-i', id, 'bash', '-c', `set -eu; export DEBIAN_FRONTEND=noninteractive; ${script}`],
    {
      reject: false,
      ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
    },
  );
}

/** The repository as the client sees it at `at`: replaced whole, as a mirror sync would. */
async function giveRepo(id: string, dir: string, at: string): Promise<void> {
  const tar = await execa('tar', ['-C', dir, '-c', '.'], { encoding: 'buffer' });
  const put = await sh(id, `rm -rf ${at} && mkdir -p ${at} && tar -x -C ${at}`, Buffer.from(tar.stdout));
  expect(put.exitCode, put.stderr).toBe(0);
}

/** Debian's archive for the release, and the published repository at /repo unless `withRepo` is false. */
function aptSources(release: string, withRepo = true): string {
  const debian = `deb http://deb.debian.org/debian ${release} main\\ndeb http://deb.debian.org/debian ${release}-updates main`;
  const security = `deb http://deb.debian.org/debian-security ${release}-security main`;
  const kfarm = withRepo ? `deb [signed-by=/repo/archive-key.asc] file:/repo ${release} main\\n` : '';
  return `rm -f /etc/apt/sources.list.d/*; printf '${debian}\\n${security}\\n${kfarm}' > /etc/apt/sources.list`;
}

/** `apt-get install` of packages, printing only the log's tail when it fails. */
function aptInstall(packages: string, log: string): string {
  return (
    `INITRD=No apt-get install -y -qq --no-install-recommends ${packages} >/tmp/${log}.log 2>&1 ` +
    `|| { tail -20 /tmp/${log}.log; exit 1; }; `
  );
}

/** Every file of a tree: path → bytes (or link target), for byte-for-byte comparison. */
async function treeContents(root: string, rel = ''): Promise<Map<string, string>> {
  const contents = new Map<string, string>();
  for (const name of (await readdir(join(root, rel))).sort()) {
    const path = join(rel, name);
    const info = await lstat(join(root, path));
    if (info.isSymbolicLink()) contents.set(path, `-> ${await readlink(join(root, path))}`);
    else if (info.isDirectory()) for (const [k, v] of await treeContents(root, path)) contents.set(k, v);
    else contents.set(path, (await readFile(join(root, path))).toString('base64'));
  }
  return contents;
}

beforeAll(async () => {
  await requireEngine();
  work = await mkdtemp(join(tmpdir(), 'kfarm-publish-'));
  const matrix = join(work, 'matrix.yaml');
  await writeFile(
    matrix,
    'distro: debian\nreleases:\n  bookworm:\n    kernels: latest:2\n  trixie:\n    kernels: latest:2\n',
  );
  const targets = await resolveTargets({ matrix });
  bookworm = targets.filter((t) => t.release === 'bookworm');
  trixie = targets.filter((t) => t.release === 'trixie');
  expect(bookworm).toHaveLength(2);
  expect(trixie).toHaveLength(2);
  keyFile = await generateKey(work);
  outOld = await buildAndPackage([bookworm[1]!, trixie[0]!]);
  outNew = await buildAndPackage([bookworm[0]!]);
});

afterAll(async () => {
  if (containers.length) await execa('docker', ['rm', '-f', ...containers], { reject: false });
  await rm(work, { recursive: true, force: true });
});

describe('kfarm publish: the repository', () => {
  it('is the same bytes for the same inputs and SOURCE_DATE_EPOCH, published at once or one output after another', async () => {
    const [a, b] = [join(work, 'repro-a'), join(work, 'repro-b')];
    expect((await publish([outOld, '--apt', a, '--yum', join(a, 'yum')])).exitCode).toBe(0);
    expect((await publish([outNew, '--apt', a, '--yum', join(a, 'yum')])).exitCode).toBe(0);
    const once = await publish([outOld, outNew, '--apt', b, '--yum', join(b, 'yum')]);
    expect(once.exitCode, once.stderr).toBe(0);
    const [ta, tb] = [await treeContents(a), await treeContents(b)];
    expect([...ta.keys()]).toEqual([...tb.keys()]);
    expect(ta).toEqual(tb);
    expect(await readlink(join(a, 'dists'))).toMatch(/^dists\.d\/[0-9a-f]{16}$/);
    // The metapackage follows the newest bookworm kernel; the signature checks with the published key.
    const packages = await readFile(join(a, 'dists/bookworm/main/binary-amd64/Packages'), 'utf8');
    const newest = bookworm[0]!.kernel.replace(/-amd64$/, '').replace(/-/g, '.');
    expect(packages).toMatch(new RegExp(`^Package: hello-modules-amd64\n(?:.+\n)*?Version: ${newest}\\+1\\.0-1$`, 'm'));
    expect(packages).toContain(`Depends: hello-modules-${bookworm[0]!.kernel} (= 1.0-1)`);
    await execa('gpg', ['--dearmor', '-o', join(work, 'key.gpg'), join(a, 'archive-key.asc')]);
    const verify = await execa('gpgv', ['--keyring', join(work, 'key.gpg'), join(a, 'dists/bookworm/InRelease')], {
      reject: false,
    });
    expect(verify.exitCode, verify.stderr).toBe(0);
  });

  it('keeps the newest kernels with --keep-kernels, refuses a changed package and bad input in one line', async () => {
    const repo = join(work, 'keep');
    expect((await publish([outOld, outNew, '--apt', repo])).exitCode).toBe(0);
    const kept = await publish([outOld, '--apt', repo, '--keep-kernels', '1']);
    expect(kept.exitCode, kept.stderr).toBe(0);
    const pool = await readdir(join(repo, 'pool/bookworm'));
    expect(pool).toContain(`hello-modules-${bookworm[0]!.kernel}_1.0-1_amd64.deb`);
    expect(pool).not.toContain(`hello-modules-${bookworm[1]!.kernel}_1.0-1_amd64.deb`);
    expect(kept.stdout).toContain(`removed: hello-modules-${bookworm[1]!.kernel}_1.0-1_amd64.deb`);

    // Packages remade with another SOURCE_DATE_EPOCH: same names and versions, other bytes. Refused, and the
    // repository is left exactly as it was.
    const before = await treeContents(repo);
    const remade = await tempOut('kfarm-remade-');
    await cp(outOld, remade, { recursive: true });
    const repack = await runKfarm(['package', remade, '--format', 'deb,dkms-deb', '--source', example('hello')], {
      env: { SOURCE_DATE_EPOCH: '1700000999' },
    });
    expect(repack.exitCode, repack.stderr).toBe(0);
    const changed = await publish([remade, '--apt', repo]);
    expect(changed.exitCode).toBe(2);
    expect(changed.stderr).toMatch(/^kfarm: .*\.deb: .*pool\/.*\.deb is already published with other contents/);
    expect(await treeContents(repo)).toEqual(before);

    // The key file was imported into a private GnuPG home: gone after each publish, and so is its gpg-agent.
    expect((await readdir(tmpdir())).filter((n) => n.startsWith('kfarm-gnupg-'))).toEqual([]);
    expect((await execa('pgrep', ['-f', 'gpg-agent.*kfarm-gnupg-'], { reject: false })).stdout).toBe('');

    const noKey = await runKfarm(['publish', outOld, '--apt', repo]);
    expect(noKey.exitCode).toBe(2);
    expect(noKey.stderr.trim()).toBe('kfarm: --gpg-key: required (apt and dnf refuse unsigned repositories)');
    const badKey = await runKfarm(['publish', outOld, '--apt', repo, '--gpg-key', join(work, 'matrix.yaml')]);
    expect(badKey.exitCode).toBe(2);
    expect(badKey.stderr).toMatch(/^kfarm: --gpg-key .*matrix\.yaml: /);
    const notOut = await publish([work, '--apt', repo]);
    expect(notOut.exitCode).toBe(2);
    expect(notOut.stderr).toMatch(/report\.json: not found/);
  });
});

describe('kfarm publish: real clients', () => {
  it('apt installs a kernel’s package, follows the newest kernel on apt upgrade, refuses a tampered index', async () => {
    const repo = join(work, 'apt');
    expect((await publish([outOld, '--apt', repo])).exitCode).toBe(0);
    const [older, newer] = [bookworm[1]!.kernel, bookworm[0]!.kernel];
    const id = await client('bookworm');
    await giveRepo(id, repo, '/repo');
    const install = await sh(
      id,
      `${aptSources('bookworm')}; apt-get -qq update; ` +
        aptInstall('hello-modules-amd64', 'apt') +
        `dpkg-query -W -f '\${Package} \${Version}\\n' hello-modules-amd64 hello-modules-${older}; ` +
        `modinfo -k ${older} -F vermagic hello`,
    );
    expect(install.exitCode, install.stderr + install.stdout).toBe(0);
    expect(install.stdout).toContain(`hello-modules-${older} 1.0-1`);
    expect(install.stdout).toMatch(new RegExp(`^${older.replace(/[.+]/g, '\\$&')} SMP`, 'm'));

    expect((await publish([outNew, '--apt', repo])).exitCode).toBe(0);
    await giveRepo(id, repo, '/repo');
    const upgrade = await sh(
      id,
      `apt-get -qq update; INITRD=No apt -y -qq upgrade >/tmp/up.log 2>&1 || { tail -20 /tmp/up.log; exit 1; }; ` +
        `dpkg-query -W -f '\${Package} \${Version}\\n' hello-modules-amd64 hello-modules-${newer}; ` +
        `modinfo -k ${newer} -F vermagic hello`,
    );
    expect(upgrade.exitCode, upgrade.stderr + upgrade.stdout).toBe(0);
    expect(upgrade.stdout).toContain(`hello-modules-amd64 ${newer.replace(/-amd64$/, '').replace(/-/g, '.')}+1.0-1`);
    expect(upgrade.stdout).toContain(`hello-modules-${newer} 1.0-1`);
    expect(upgrade.stdout).toMatch(new RegExp(`^${newer.replace(/[.+]/g, '\\$&')} SMP`, 'm'));

    // A Packages file changed after signing: apt refuses it (its hashes are in the signed InRelease).
    const index = '/repo/dists/bookworm/main/binary-amd64';
    const tampered = await sh(
      id,
      `sed -i 's/^Description: hello/Description: evil/' ${index}/Packages && xz -c ${index}/Packages > ${index}/Packages.xz; ` +
        'rm -rf /var/lib/apt/lists/*_repo_*; apt-get update 2>&1',
    );
    expect(tampered.exitCode).not.toBe(0);
    expect(tampered.stdout).toMatch(/Hash Sum mismatch|unexpected size/);
    // So is an InRelease whose signed text was changed.
    await giveRepo(id, repo, '/repo');
    const forged = await sh(
      id,
      "sed -i 's/^Date: .*/Date: Mon, 01 Jan 2024 00:00:00 UTC/' /repo/dists/bookworm/InRelease; " +
        'rm -rf /var/lib/apt/lists/*_repo_*; apt-get update 2>&1',
    );
    expect(forged.exitCode).not.toBe(0);
    expect(forged.stdout).toMatch(/signatures were invalid|BADSIG/);
  });

  it('the -dkms package installs kfarm’s modules with no compiler, and the real dkms builds a kernel kfarm did not', async () => {
    const repo = join(work, 'dkms');
    expect((await publish([outOld, '--apt', repo])).exitCode).toBe(0);
    const [built, other] = [trixie[0]!.kernel, trixie[1]!.kernel];
    const ko = await readFile(join(outOld, 'dkms/hello/1.0', built, 'x86_64/module/hello.ko'));
    const id = await client('trixie');
    await giveRepo(id, repo, '/repo');
    const prebuilt = await sh(
      id,
      `${aptSources('trixie')}; apt-get -qq update; ` +
        'apt-get purge -y -qq gcc gcc-14 gcc-14-x86-64-linux-gnu cpp cpp-14 cpp-14-x86-64-linux-gnu >/dev/null; ' +
        aptInstall(`linux-image-${built}`, 'image') +
        aptInstall('hello-dkms', 'dkms') +
        'if command -v gcc cc x86_64-linux-gnu-gcc-14; then echo "a compiler is installed"; exit 1; fi; ' +
        `dkms status hello/1.0; sha256sum < "$(modinfo -k ${built} -n hello)"`,
    );
    expect(prebuilt.exitCode, prebuilt.stderr + prebuilt.stdout).toBe(0);
    expect(prebuilt.stdout).toContain(`hello/1.0, ${built}, x86_64: installed`);
    // The installed module is kfarm's, byte for byte: nothing was compiled.
    const sha = (await execa('sha256sum', { input: ko })).stdout.split(' ')[0];
    expect(prebuilt.stdout).toContain(`${sha}  -`);

    // Another kernel's headers arrive (and with them gcc): DKMS's own hook builds the module from source.
    const fromSource = await sh(
      id,
      aptInstall(`linux-headers-${other}`, 'headers') + `dkms status hello/1.0; modinfo -k ${other} -F vermagic hello`,
    );
    expect(fromSource.exitCode, fromSource.stderr + fromSource.stdout).toBe(0);
    expect(fromSource.stdout).toContain(`hello/1.0, ${other}, x86_64: installed`);
    expect(fromSource.stdout).toContain(`hello/1.0, ${built}, x86_64: installed`);
    expect(fromSource.stdout).toMatch(new RegExp(`^${other.replace(/[.+]/g, '\\$&')} SMP`, 'm'));
  });

  it('dnf installs the .rpm with gpgcheck=1 and refuses a tampered repomd.xml', async () => {
    const repo = join(work, 'yum');
    expect((await publish([outOld, '--yum', repo])).exitCode).toBe(0);
    const kernel = bookworm[1]!.kernel;
    const id = await client('bookworm');
    await giveRepo(id, repo, '/yum');
    const repoFile =
      '[kfarm]\\nname=kfarm\\nbaseurl=file:///yum\\nenabled=1\\ngpgcheck=1\\nrepo_gpgcheck=1\\n' +
      'gpgkey=file:///yum/archive-key.asc\\nskip_if_unavailable=False\\n';
    const install = await sh(
      id,
      `${aptSources('bookworm', false)}; apt-get -qq update; ` +
        aptInstall('dnf rpm', 'apt') +
        `mkdir -p /etc/yum.repos.d; printf '${repoFile}' > /etc/yum.repos.d/kfarm.repo; ` +
        `dnf -y -q --releasever=12 --refresh install kmod-hello-${kernel} 2>&1; rpm -q kmod-hello-${kernel}; ` +
        'rpm -q gpg-pubkey',
    );
    expect(install.exitCode, install.stderr + install.stdout).toBe(0);
    expect(install.stdout).toContain(`kmod-hello-${kernel}-1.0-1.x86_64`);
    expect(install.stdout).toMatch(/^gpg-pubkey-/m);

    const tampered = await sh(
      id,
      "sed -i 's|<revision>[0-9]*</revision>|<revision>1</revision>|' /yum/repodata/repomd.xml; " +
        'dnf -y --releasever=12 --refresh makecache 2>&1',
    );
    expect(tampered.exitCode).not.toBe(0);
    expect(tampered.stdout).toMatch(/repomd\.xml GPG signature verification error: Bad GPG signature/);
  });
});
