import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { kernelsFromPackages, parsePackages, type KernelImage } from '../../src/plan/debian-index.js';
import { downloadVerified } from '../../src/plan/download.js';
import { findKernelImage, pickImage } from '../../src/verify/kernel-image.js';
import { KernelStore, type KernelEvent } from '../../src/verify/kernel-store.js';
import { buildModuleIndex } from '../../src/verify/module-index.js';
import { readJsonReport } from '../../src/model/report.js';

const text = (path: string) => readFile(new URL(`../fixtures/${path}`, import.meta.url), 'utf8');

/** Serves files from memory on 127.0.0.1 and counts requests. */
class Files {
  readonly routes = new Map<string, Uint8Array | string>();
  readonly hits = new Map<string, number>();
  private readonly server: Server = createServer((req, res) => {
    const path = req.url ?? '';
    this.hits.set(path, (this.hits.get(path) ?? 0) + 1);
    const body = this.routes.get(path);
    if (body === undefined) return void res.writeHead(404).end();
    res.writeHead(200).end(body);
  });
  url = '';
  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }
  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const sha256 = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'kfarm-verify-kernels-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('kernel image packages in the archive indexes', () => {
  it('keeps linux-image-<kver> and -unsigned, not -dbg, metapackages or templates', async () => {
    const index = await kernelsFromPackages(
      parsePackages(await text('verify-index/bookworm-security.Packages')),
      'bookworm-security',
    );
    expect(index.kernels.map((k) => k.kernel)).toEqual(['6.1.0-56-amd64']);
    expect(index.images?.map((i) => [i.package, i.kernel, i.unsigned])).toEqual([
      ['linux-image-6.1.0-56-amd64', '6.1.0-56-amd64', false],
      ['linux-image-6.1.0-56-amd64-unsigned', '6.1.0-56-amd64', true],
      ['linux-image-6.1.0-56-cloud-amd64', '6.1.0-56-cloud-amd64', false],
      ['linux-image-6.1.0-55-amd64-unsigned', '6.1.0-55-amd64', true],
    ]);
    expect(index.images?.[0]).toEqual({
      kernel: '6.1.0-56-amd64',
      package: 'linux-image-6.1.0-56-amd64',
      version: '6.1.192-2',
      unsigned: false,
      filename: 'pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb',
      sha256: 'a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1',
      size: 70550672,
      suite: 'bookworm-security',
    });
  });

  it('leaves `images` out of an index without any (the recorded header indexes)', async () => {
    const index = await kernelsFromPackages(parsePackages(await text('index/bookworm.Packages')), 'bookworm');
    expect(index.images).toBeUndefined();
  });

  it('prefers the signed package, then the newest version', () => {
    const image = (pkg: string, version: string, unsigned: boolean): KernelImage => ({
      kernel: '6.1.0-56-amd64',
      package: pkg,
      version,
      unsigned,
      url: `http://x/${pkg}_${version}.deb`,
      sha256: '0',
      size: 1,
      suite: 's',
      backports: false,
    });
    const unsigned = image('linux-image-6.1.0-56-amd64-unsigned', '6.1.192-3', true);
    const signed = image('linux-image-6.1.0-56-amd64', '6.1.192-2', false);
    expect(pickImage([unsigned, signed], '6.1.0-56-amd64')).toBe(signed);
    expect(pickImage([unsigned], '6.1.0-56-amd64')).toBe(unsigned);
    expect(pickImage([unsigned, signed], '6.1.0-55-amd64')).toBeUndefined();
  });
});

describe('findKernelImage against a local archive', () => {
  let archive: Files;
  let cacheDir: string;
  const suites = ['bookworm', 'bookworm-updates', 'bookworm-security', 'bookworm-backports'];
  const indexPath = (suite: string) =>
    `${suite.endsWith('-security') ? '/debian-security' : '/debian'}/dists/${suite}/main/binary-amd64/Packages.xz`;

  beforeEach(async () => {
    archive = await new Files().start();
    cacheDir = await mkdtemp(join(scratch, 'cache-'));
    for (const suite of suites) {
      const packages =
        suite === 'bookworm-security'
          ? await text('verify-index/bookworm-security.Packages')
          : await text(`index/${suite}.Packages`);
      const xz = Buffer.from((await execa('xz', ['-c'], { input: packages, encoding: 'buffer' })).stdout);
      archive.routes.set(indexPath(suite), xz);
      archive.routes.set(
        indexPath(suite).replace('main/binary-amd64/Packages.xz', 'InRelease'),
        `Suite: ${suite}\nSHA256:\n ${sha256(xz)} ${xz.length} main/binary-amd64/Packages.xz\n`,
      );
    }
  });
  afterEach(async () => {
    await archive.close();
  });

  const options = () => ({
    mirror: `${archive.url}/debian`,
    securityMirror: `${archive.url}/debian-security`,
    cacheDir,
    verifySignature: false,
  });

  it('finds the signed image with its full URL, else the unsigned one', async () => {
    const signed = await findKernelImage('bookworm', '6.1.0-56-amd64', options());
    expect(signed).toMatchObject({
      package: 'linux-image-6.1.0-56-amd64',
      url: `${archive.url}/debian-security/pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb`,
      suite: 'bookworm-security',
      backports: false,
    });
    const unsigned = await findKernelImage('bookworm', '6.1.0-55-amd64', options());
    expect(unsigned).toMatchObject({
      package: 'linux-image-6.1.0-55-amd64-unsigned',
      unsigned: true,
      version: '6.1.192-1',
    });
  });

  it('an unknown kernel is an error naming both packages and the suites searched', async () => {
    await expect(findKernelImage('bookworm', '6.1.0-99-amd64', options())).rejects.toMatchObject({
      code: 'KFARM_TARGET_UNKNOWN',
      message:
        'no linux-image-6.1.0-99-amd64 or linux-image-6.1.0-99-amd64-unsigned in ' +
        'bookworm, bookworm-updates, bookworm-security, bookworm-backports: cannot boot bookworm/6.1.0-99-amd64',
    });
  });
});

describe('downloadVerified', () => {
  let server: Files;
  beforeAll(async () => {
    server = await new Files().start();
    server.routes.set('/pool/a.deb', 'package bytes');
  });
  afterAll(async () => {
    await server.close();
  });

  it('renames a matching download into place', async () => {
    const dest = join(scratch, 'a.deb');
    await downloadVerified(`${server.url}/pool/a.deb`, dest, { sha256: sha256('package bytes'), size: 13 });
    expect(await readFile(dest, 'utf8')).toBe('package bytes');
  });

  it('a checksum mismatch is an error naming the URL, and leaves nothing behind', async () => {
    const dir = await mkdtemp(join(scratch, 'dl-'));
    const url = `${server.url}/pool/a.deb`;
    await expect(downloadVerified(url, join(dir, 'a.deb'), { sha256: sha256('other'), size: 13 })).rejects.toThrow(
      new RegExp(
        `^cannot fetch ${url.replace(/[.]/g, '\\.')}: checksum mismatch \\(got 13 bytes, sha256 ${sha256('package bytes')}; the index says 13 bytes, sha256 ${sha256('other')}\\)$`,
      ),
    );
    await expect(
      downloadVerified(`${server.url}/pool/missing.deb`, join(dir, 'b.deb'), { sha256: '0', size: 1 }),
    ).rejects.toThrow(`cannot fetch ${server.url}/pool/missing.deb: HTTP 404`);
    expect(await readdir(dir)).toEqual([]);
  });
});

/** A relocatable ELF64 object whose .modinfo says `name` and `depends`: all the index reads of a module. */
async function fakeModule(path: string, name: string, depends: string): Promise<void> {
  await execa('as', ['-o', path, '-'], {
    input: `.section .modinfo,"a"\n.asciz "license=GPL"\n.asciz "depends=${depends}"\n.asciz "name=${name}"\n`,
  });
}

/** A kernel image .deb like Debian's: /boot/vmlinuz-<kver> and modules, compressed (trixie) or not. */
async function fakeImageDeb(kernel: string, layout: 'lib' | 'usr/lib', compress: boolean): Promise<Buffer> {
  const root = await mkdtemp(join(scratch, 'deb-'));
  const modules = join(root, layout, 'modules', kernel, 'kernel');
  await mkdir(join(root, 'DEBIAN'), { recursive: true });
  await mkdir(join(root, 'boot'), { recursive: true });
  await mkdir(join(modules, 'drivers/media'), { recursive: true });
  await writeFile(
    join(root, 'DEBIAN/control'),
    `Package: linux-image-${kernel}\nVersion: 1.0-1\nArchitecture: amd64\n` +
      'Maintainer: kfarm tests <t@example.org>\nDescription: test kernel\n',
  );
  await writeFile(join(root, 'boot', `vmlinuz-${kernel}`), 'not really a kernel');
  await fakeModule(join(modules, 'drivers/media/mc.ko'), 'mc', '');
  await fakeModule(join(modules, 'drivers/media/videodev.ko'), 'videodev', 'mc');
  await fakeModule(join(modules, 'drivers/media/v4l2-async.ko'), 'v4l2_async', 'videodev,mc');
  if (compress)
    await execa('xz', [
      join(modules, 'drivers/media/mc.ko'),
      join(modules, 'drivers/media/videodev.ko'),
      join(modules, 'drivers/media/v4l2-async.ko'),
    ]);
  const deb = join(root, '..', `${kernel}.deb`);
  await execa('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, deb]);
  return readFile(deb);
}

describe('KernelStore', () => {
  let server: Files;
  beforeAll(async () => {
    server = await new Files().start();
  });
  afterAll(async () => {
    await server.close();
  });

  const image = (kernel: string, bytes: Buffer, sha = sha256(bytes)): KernelImage => ({
    kernel,
    package: `linux-image-${kernel}`,
    version: '1.0-1',
    unsigned: false,
    url: `${server.url}/pool/linux-image-${kernel}_1.0-1_amd64.deb`,
    sha256: sha,
    size: bytes.length,
    suite: 'trixie',
    backports: false,
  });

  it('downloads and unpacks a kernel once, even when asked concurrently, and indexes its modules by name', async () => {
    const kernel = '6.12.1+deb13-amd64';
    const deb = await fakeImageDeb(kernel, 'usr/lib', true);
    server.routes.set(`/pool/linux-image-${kernel}_1.0-1_amd64.deb`, deb);
    const cacheDir = await mkdtemp(join(scratch, 'store-'));
    const events: KernelEvent['kind'][] = [];
    const store = new KernelStore({
      cacheDir,
      lookup: async () => image(kernel, deb),
      onEvent: (e) => events.push(e.kind),
    });
    const [a, b] = await Promise.all([store.get('trixie', kernel), store.get('trixie', kernel)]);
    expect(a).toBe(b);
    expect(server.hits.get(`/pool/linux-image-${kernel}_1.0-1_amd64.deb`)).toBe(1);
    expect(events).toEqual(['download', 'unpack', 'ready']);
    const tree = join(cacheDir, 'kernels', `linux-image-${kernel}_1.0-1_amd64`);
    expect(a.vmlinuz).toBe(join(tree, 'root/boot', `vmlinuz-${kernel}`));
    expect(a.modulesDir).toBe(join(tree, 'root/usr/lib/modules', kernel));
    expect(a.index.modules).toEqual({
      mc: { path: 'kernel/drivers/media/mc.ko.xz', depends: [] },
      v4l2_async: { path: 'kernel/drivers/media/v4l2-async.ko.xz', depends: ['videodev', 'mc'] },
      videodev: { path: 'kernel/drivers/media/videodev.ko.xz', depends: ['mc'] },
    });
    expect(JSON.parse(await readFile(join(tree, 'modules.json'), 'utf8'))).toEqual(a.index);
    expect(await readdir(join(cacheDir, 'kernels'))).toEqual(['debs', `linux-image-${kernel}_1.0-1_amd64`]);
    expect(await readdir(join(cacheDir, 'kernels/debs'))).toEqual([`linux-image-${kernel}_1.0-1_amd64.deb`]);

    // A later run reuses the unpacked tree without downloading.
    const again: KernelEvent[] = [];
    const later = await new KernelStore({
      cacheDir,
      lookup: async () => image(kernel, deb),
      onEvent: (e) => again.push(e),
    }).get('trixie', kernel);
    expect(later.index).toEqual(a.index);
    expect(again).toMatchObject([{ kind: 'ready', cached: true }]);
    expect(server.hits.get(`/pool/linux-image-${kernel}_1.0-1_amd64.deb`)).toBe(1);
  });

  it('reads bookworm-style /lib/modules with plain .ko files', async () => {
    const kernel = '6.1.0-9-amd64';
    const deb = await fakeImageDeb(kernel, 'lib', false);
    server.routes.set(`/pool/linux-image-${kernel}_1.0-1_amd64.deb`, deb);
    const files = await new KernelStore({
      cacheDir: await mkdtemp(join(scratch, 'store-')),
      lookup: async () => image(kernel, deb),
    }).get('bookworm', kernel);
    expect(files.modulesDir.endsWith(`/root/lib/modules/${kernel}`)).toBe(true);
    expect(files.index.modules['videodev']).toEqual({ path: 'kernel/drivers/media/videodev.ko', depends: ['mc'] });
  });

  it('a package that does not match the index is an error naming the URL, and nothing is cached', async () => {
    const kernel = '6.1.0-8-amd64';
    const deb = await fakeImageDeb(kernel, 'lib', false);
    server.routes.set(`/pool/linux-image-${kernel}_1.0-1_amd64.deb`, deb);
    const cacheDir = await mkdtemp(join(scratch, 'store-'));
    const bad = image(kernel, deb, sha256('something else'));
    await expect(new KernelStore({ cacheDir, lookup: async () => bad }).get('bookworm', kernel)).rejects.toThrow(
      `cannot fetch ${bad.url}: checksum mismatch`,
    );
    expect(await readdir(join(cacheDir, 'kernels'))).toEqual(['debs']);
    expect(await readdir(join(cacheDir, 'kernels/debs'))).toEqual([]);
  });
});

describe('buildModuleIndex', () => {
  it('reads names from .modinfo, not file names, across many xz files', async () => {
    const dir = await mkdtemp(join(scratch, 'mods-'));
    await mkdir(join(dir, 'kernel'));
    const names = Array.from({ length: 450 }, (_, i) => `m${i}`);
    await Promise.all(
      names.map((n, i) => fakeModule(join(dir, 'kernel', `file-${n}.ko`), n, i > 0 ? `m${i - 1}` : '')),
    );
    await execa('sh', ['-c', 'xz kernel/file-m1*.ko'], { cwd: dir });
    const index = await buildModuleIndex(dir, 'k');
    expect(Object.keys(index.modules)).toHaveLength(450);
    expect(index.modules['m0']).toEqual({ path: 'kernel/file-m0.ko', depends: [] });
    expect(index.modules['m100']).toEqual({ path: 'kernel/file-m100.ko.xz', depends: ['m99'] });
    expect(index.modules['m449']).toEqual({ path: 'kernel/file-m449.ko', depends: ['m448'] });
  });
});

describe('readJsonReport', () => {
  it('names the file for a missing, unreadable or foreign report.json', async () => {
    const dir = await mkdtemp(join(scratch, 'out-'));
    const path = join(dir, 'report.json');
    await expect(readJsonReport(dir)).rejects.toMatchObject({
      code: 'KFARM_USAGE',
      message: `${path}: not found (run \`kfarm build --out\` into this directory first)`,
    });
    await writeFile(path, '{');
    await expect(readJsonReport(dir)).rejects.toThrow(`${path}: not valid JSON`);
    await writeFile(path, '{"schemaVersion": 2}');
    await expect(readJsonReport(dir)).rejects.toThrow(`${path}: not a kfarm report with schemaVersion 1`);
    const target = {
      id: 'debian/bookworm/6.1.0-56-amd64',
      release: 'bookworm',
      kernel: '6.1.0-56-amd64',
      arch: 'x86_64',
      status: 'built',
      artifacts: ['../../etc/passwd'],
    };
    await writeFile(path, JSON.stringify({ schemaVersion: 1, module: 'm', version: '1', targets: [target] }));
    await expect(readJsonReport(dir)).rejects.toThrow(
      `${path}: debian/bookworm/6.1.0-56-amd64: artifact path "../../etc/passwd" leaves the output directory`,
    );
  });
});
