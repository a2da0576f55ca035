import { createHash } from 'node:crypto';
import { access, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  discoverKernels,
  discoverReleaseIndex,
  flavourOf,
  kernelsFromPackages,
  parsePackages,
  type PackageStanza,
  type ReleaseDiscoveryOptions,
} from '../../src/plan/debian-index.js';
import { indexCacheDir } from '../../src/plan/debian-index-cache.js';
import { debianSuites } from '../../src/plan/debian-releases.js';
import { formatTargetId, parseTargetId } from '../../src/plan/targets.js';

const fixture = (suite: string): Promise<string> =>
  readFile(new URL(`../fixtures/index/${suite}.Packages`, import.meta.url), 'utf8');

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function* chunked(text: string, size: number): AsyncGenerator<string> {
  for (let i = 0; i < text.length; i += size) yield text.slice(i, i + size);
}

describe('parsePackages', () => {
  it('reads every stanza of a recorded index, keeping the fields discovery needs', async () => {
    const stanzas = await collect(parsePackages(await fixture('bookworm')));
    expect(stanzas).toHaveLength(17);
    expect(stanzas.find((s) => s.package === 'linux-headers-6.1.0-47-amd64')).toEqual({
      package: 'linux-headers-6.1.0-47-amd64',
      version: '6.1.170-3',
      source: 'linux',
      depends:
        'linux-headers-6.1.0-47-common (= 6.1.170-3), linux-kbuild-6.1 (>= 6.1.170-3), linux-compiler-gcc-12-x86',
      filename: 'pool/main/l/linux/linux-headers-6.1.0-47-amd64_6.1.170-3_amd64.deb',
      sha256: '2a40c463e108b1ea3abf2e16e38eb9e27b237693b974b862adde73873c7d85c1',
      size: 1655296,
    });
  });

  it('gives the same stanzas whatever the chunk boundaries', async () => {
    const text = await fixture('bookworm-security');
    const whole = await collect(parsePackages(text));
    for (const size of [1, 7, 4096]) expect(await collect(parsePackages(chunked(text, size)))).toEqual(whole);
  });

  it('folds continuation lines, ignores field-name case and tolerates blank-line runs', async () => {
    const text =
      'Package: a\nversion: 1\nDepends: b,\n c (>= 2),\n\td\nDescription: x\n long\n .\n text\n\n\n\nPackage: e\nVersion: 2';
    expect(await collect(parsePackages(text))).toEqual<PackageStanza[]>([
      { package: 'a', version: '1', depends: 'b, c (>= 2), d' },
      { package: 'e', version: '2' },
    ]);
  });

  it('rejects stanzas it cannot make sense of', async () => {
    await expect(collect(parsePackages('Package: a\nSize: 1\n'))).rejects.toThrow(
      'Packages stanza for a has no Version',
    );
    await expect(collect(parsePackages('Version: 1\n'))).rejects.toThrow('without a Package field');
    await expect(collect(parsePackages('Package: a\nno colon here\n'))).rejects.toThrow('malformed Packages line');
  });
});

describe('kernelsFromPackages', () => {
  const index = async (suite: string) => kernelsFromPackages(parsePackages(await fixture(suite)), suite);

  it('finds the flavoured headers and what the metapackages point at', async () => {
    const bookworm = await index('bookworm');
    expect(bookworm.packages).toBe(17);
    expect(bookworm.kernels.map((k) => [k.kernel, k.flavour, k.commonPackage])).toEqual([
      ['6.1.0-47-amd64', 'amd64', 'linux-headers-6.1.0-47-common'],
      ['6.1.0-47-cloud-amd64', 'cloud-amd64', 'linux-headers-6.1.0-47-common'],
      ['6.1.0-47-rt-amd64', 'rt-amd64', 'linux-headers-6.1.0-47-common-rt'],
      ['6.1.0-50-amd64', 'amd64', 'linux-headers-6.1.0-50-common'],
      ['6.1.0-50-cloud-amd64', 'cloud-amd64', 'linux-headers-6.1.0-50-common'],
      ['6.1.0-50-rt-amd64', 'rt-amd64', 'linux-headers-6.1.0-50-common-rt'],
    ]);
    expect(bookworm.kernels[0]).toEqual({
      kernel: '6.1.0-47-amd64',
      flavour: 'amd64',
      headersPackage: 'linux-headers-6.1.0-47-amd64',
      headersVersion: '6.1.170-3',
      commonPackage: 'linux-headers-6.1.0-47-common',
      compiler: 'gcc-12',
      files: [
        expect.objectContaining({ package: 'linux-headers-6.1.0-47-amd64', version: '6.1.170-3' }),
        expect.objectContaining({ package: 'linux-headers-6.1.0-47-common', version: '6.1.170-3' }),
        expect.objectContaining({ package: 'linux-kbuild-6.1', filename: expect.stringMatching(/^pool\//) }),
      ],
      suite: 'bookworm',
      source: 'linux',
    });
    expect(bookworm.defaults).toEqual([
      { flavour: 'amd64', metapackage: 'linux-headers-amd64', version: '6.1.176-1', kernel: '6.1.0-50-amd64' },
      {
        flavour: 'cloud-amd64',
        metapackage: 'linux-headers-cloud-amd64',
        version: '6.1.176-1',
        kernel: '6.1.0-50-cloud-amd64',
      },
      { flavour: 'rt-amd64', metapackage: 'linux-headers-rt-amd64', version: '6.1.176-1', kernel: '6.1.0-50-rt-amd64' },
    ]);
  });

  it('skips versioned metapackages such as linux-headers-6.12-amd64', async () => {
    const security = await index('bookworm-security');
    expect(security.kernels.map((k) => k.kernel)).toEqual([
      '6.1.0-55-amd64',
      '6.1.0-56-amd64',
      '6.1.0-56-cloud-amd64',
      '6.12.117+deb12-amd64',
    ]);
    expect(security.defaults.map((d) => [d.flavour, d.kernel])).toEqual([
      ['amd64', '6.1.0-56-amd64'],
      ['cloud-amd64', '6.1.0-56-cloud-amd64'],
    ]);
  });

  it('reads the compiler however each release names it', async () => {
    expect((await index('trixie')).kernels[0]?.compiler).toBe('gcc-14');
    const sid = await index('sid');
    expect(sid.kernels).toMatchObject([{ kernel: '7.2.13+deb14-amd64', compiler: 'gcc-16' }]);
    expect(sid.defaults).toMatchObject([{ flavour: 'amd64', kernel: '7.2.13+deb14-amd64' }]);
  });

  it('counts an empty index as zero packages', async () => {
    expect(await index('trixie-updates')).toEqual({ suite: 'trixie-updates', packages: 0, kernels: [], defaults: [] });
  });

  it.each([
    ['6.1.0-47-amd64', 'amd64'],
    ['6.1.0-47-cloud-amd64', 'cloud-amd64'],
    ['6.1.0-47-rt-amd64', 'rt-amd64'],
    ['6.12.115+deb13.1-rt-amd64', 'rt-amd64'],
    ['6.1.0-47-common', undefined],
    ['6.1.0-47-arm64', undefined],
  ])('flavourOf(%s) = %s', (kernel, flavour) => {
    expect(flavourOf(kernel)).toBe(flavour);
  });
});

describe('debianSuites', () => {
  it('lists where each release publishes kernels', () => {
    expect(debianSuites('bullseye').map((s) => s.name)).toEqual(['bullseye', 'bullseye-updates', 'bullseye-security']);
    expect(debianSuites('sid').map((s) => s.name)).toEqual(['sid']);
    expect(debianSuites('bookworm')).toEqual([
      { name: 'bookworm', archiveUrl: 'http://deb.debian.org/debian', backports: false, mayBeEmpty: false },
      { name: 'bookworm-updates', archiveUrl: 'http://deb.debian.org/debian', backports: false, mayBeEmpty: true },
      {
        name: 'bookworm-security',
        archiveUrl: 'http://deb.debian.org/debian-security',
        backports: false,
        mayBeEmpty: false,
      },
      { name: 'bookworm-backports', archiveUrl: 'http://deb.debian.org/debian', backports: true, mayBeEmpty: false },
    ]);
    expect(() => debianSuites('buster')).toThrow('unknown Debian release "buster"');
  });

  it('takes mirrors from options, then the environment', () => {
    const saved = { ...process.env };
    try {
      process.env['KFARM_DEBIAN_MIRROR'] = 'http://mirror.example/debian/';
      process.env['KFARM_DEBIAN_SECURITY_MIRROR'] = 'http://mirror.example/security';
      expect(debianSuites('trixie').map((s) => s.archiveUrl)).toEqual([
        'http://mirror.example/debian',
        'http://mirror.example/debian',
        'http://mirror.example/security',
        'http://mirror.example/debian',
      ]);
      expect(debianSuites('trixie', { securityMirror: 'http://x/s' })[2]?.archiveUrl).toBe('http://x/s');
    } finally {
      process.env = saved;
    }
  });
});

describe('indexCacheDir', () => {
  it('prefers the option, then KFARM_CACHE_DIR, then XDG_CACHE_HOME', () => {
    const saved = { ...process.env };
    try {
      process.env['XDG_CACHE_HOME'] = '/xdg';
      process.env['KFARM_CACHE_DIR'] = '';
      expect(indexCacheDir()).toBe('/xdg/kfarm/index');
      process.env['KFARM_CACHE_DIR'] = '/kfarm-cache';
      expect(indexCacheDir()).toBe('/kfarm-cache/index');
      expect(indexCacheDir('/opt')).toBe('/opt/index');
    } finally {
      process.env = saved;
    }
  });
});

/** A Debian archive on 127.0.0.1 serving recorded indexes with a generated, unsigned InRelease. */
class TestArchive {
  readonly routes = new Map<string, { status: number; body: Uint8Array | string; hang?: boolean }>();
  readonly hits = new Map<string, number>();
  /** Called once a path has been served (to change the archive between two fetches). */
  readonly afterHit = new Map<string, () => void>();
  private readonly server: Server;
  url = '';

  constructor() {
    this.server = createServer((req, res) => {
      const path = req.url ?? '';
      this.hits.set(path, (this.hits.get(path) ?? 0) + 1);
      const route = this.routes.get(path);
      if (!route) return void res.writeHead(404).end();
      if (route.hang) return void res.writeHead(200).write(route.body.slice(0, 64));
      res.writeHead(route.status).end(route.body);
      this.afterHit.get(path)?.();
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  indexPath(suite: string): string {
    return `${suite.endsWith('-security') ? '/debian-security' : '/debian'}/dists/${suite}/main/binary-amd64/Packages.xz`;
  }

  releasePath(suite: string): string {
    return this.indexPath(suite).replace('main/binary-amd64/Packages.xz', 'InRelease');
  }

  /** Serves `packages` as the suite's index; `listed` (default: the same bytes) is what InRelease vouches for. */
  async serve(suite: string, packages: string | Uint8Array, listed?: Uint8Array): Promise<void> {
    const bytes = typeof packages === 'string' ? await xz(packages) : packages;
    const vouched = listed ?? bytes;
    const sha256 = createHash('sha256').update(vouched).digest('hex');
    this.routes.set(this.indexPath(suite), { status: 200, body: bytes });
    this.routes.set(this.releasePath(suite), {
      status: 200,
      body:
        `Origin: Debian\nSuite: ${suite}\nSHA256:\n ${'0'.repeat(64)} 1 main/binary-amd64/Packages\n` +
        ` ${sha256} ${vouched.length} main/binary-amd64/Packages.xz\n`,
    });
  }

  fail(path: string, status: number): void {
    this.routes.set(path, { status, body: 'broken' });
  }
}

async function xz(text: string): Promise<Uint8Array> {
  return (await execa('xz', ['-c'], { input: text, encoding: 'buffer' })).stdout;
}

const signatureCheck = await hasSignatureCheck();

const SUITES = [
  'bookworm',
  'bookworm-updates',
  'bookworm-security',
  'bookworm-backports',
  'trixie',
  'trixie-updates',
  'trixie-security',
];

describe('discovery against a local archive', () => {
  let archive: TestArchive;
  let cacheDir: string;
  let options: ReleaseDiscoveryOptions;

  beforeEach(async () => {
    archive = await new TestArchive().start();
    for (const suite of SUITES) await archive.serve(suite, await fixture(suite));
    cacheDir = await mkdtemp(join(tmpdir(), 'kfarm-index-'));
    options = {
      mirror: `${archive.url}/debian`,
      securityMirror: `${archive.url}/debian-security`,
      cacheDir,
      verifySignature: false,
    };
  });

  afterEach(async () => {
    await archive.close();
    await rm(cacheDir, { recursive: true, force: true });
  });

  it('lists every kernel of a release once, from the suite with the newest headers', async () => {
    // Synthetic: bookworm-updates republishing 6.1.0-50-amd64 with a newer version, to exercise deduplication.
    const bookworm = await fixture('bookworm');
    const republished = bookworm.split('\n\n').find((s) => s.startsWith('Package: linux-headers-6.1.0-50-amd64\n'));
    await archive.serve(
      'bookworm-updates',
      `${await fixture('bookworm-updates')}\n${republished?.replace('Version: 6.1.176-1', 'Version: 6.1.176-1+deb12u1')}\n`,
    );

    const result = await discoverReleaseIndex('bookworm', options);
    expect(result.kernels.map((k) => [k.kernel, k.headersVersion, k.suite, k.backports])).toEqual([
      ['6.1.0-47-amd64', '6.1.170-3', 'bookworm', false],
      ['6.1.0-47-cloud-amd64', '6.1.170-3', 'bookworm', false],
      ['6.1.0-47-rt-amd64', '6.1.170-3', 'bookworm', false],
      ['6.1.0-50-cloud-amd64', '6.1.176-1', 'bookworm', false],
      ['6.1.0-50-rt-amd64', '6.1.176-1', 'bookworm', false],
      ['6.1.0-50-amd64', '6.1.176-1+deb12u1', 'bookworm-updates', false],
      ['6.1.0-55-amd64', '6.1.192-1', 'bookworm-security', false],
      ['6.1.0-56-amd64', '6.1.192-2', 'bookworm-security', false],
      ['6.1.0-56-cloud-amd64', '6.1.192-2', 'bookworm-security', false],
      ['6.12.95+deb12-amd64', '6.12.95-1~bpo12+1', 'bookworm-backports', true],
      ['6.12.117+deb12-amd64', '6.12.117-1~deb12u1', 'bookworm-security', false],
    ]);
    expect(result.kernels[0]).toEqual({
      id: 'debian/bookworm/6.1.0-47-amd64',
      distro: 'debian',
      release: 'bookworm',
      kernel: '6.1.0-47-amd64',
      flavour: 'amd64',
      arch: 'x86_64',
      headersPackage: 'linux-headers-6.1.0-47-amd64',
      headersVersion: '6.1.170-3',
      commonPackage: 'linux-headers-6.1.0-47-common',
      compiler: 'gcc-12',
      suite: 'bookworm',
      backports: false,
      debs: [
        expect.objectContaining({
          package: 'linux-headers-6.1.0-47-amd64',
          version: '6.1.170-3',
          url: `${archive.url}/debian/pool/main/l/linux/linux-headers-6.1.0-47-amd64_6.1.170-3_amd64.deb`,
          sha256: '2a40c463e108b1ea3abf2e16e38eb9e27b237693b974b862adde73873c7d85c1',
          size: 1655296,
        }),
        // -common at exactly the headers' version (`=`), linux-kbuild the newest of the suite (`>=`).
        expect.objectContaining({ package: 'linux-headers-6.1.0-47-common', version: '6.1.170-3' }),
        expect.objectContaining({ package: 'linux-kbuild-6.1', version: '6.1.176-1' }),
      ],
    });
    // The backports metapackage is newer, but `apt install linux-headers-amd64` without -t picks the security one.
    expect(result.defaults).toEqual({
      amd64: '6.1.0-56-amd64',
      'cloud-amd64': '6.1.0-56-cloud-amd64',
      'rt-amd64': '6.1.0-50-rt-amd64',
    });
  });

  it('filters flavours and leaves backports out on request', async () => {
    const result = await discoverReleaseIndex('bookworm', { ...options, flavours: ['amd64'], includeBackports: false });
    expect(result.kernels.map((k) => k.kernel)).toEqual([
      '6.1.0-47-amd64',
      '6.1.0-50-amd64',
      '6.1.0-55-amd64',
      '6.1.0-56-amd64',
      '6.12.117+deb12-amd64',
    ]);
    expect(result.defaults).toEqual({ amd64: '6.1.0-56-amd64' });
    expect(archive.hits.get(archive.indexPath('bookworm-backports'))).toBeUndefined();
    await expect(discoverReleaseIndex('bookworm', { ...options, flavours: ['arm64'] })).rejects.toThrow(
      'unknown flavour "arm64"',
    );
  });

  it('accepts an empty -updates index, keeps the first suite on equal versions, sorts releases', async () => {
    const targets = await discoverKernels({
      ...options,
      distro: 'debian',
      releases: ['trixie', 'bookworm'],
      includeBackports: false,
    });
    expect(targets[0]?.release).toBe('bookworm');
    const trixie = targets.filter((t) => t.release === 'trixie');
    expect(trixie.map((t) => [t.kernel, t.suite])).toEqual([
      ['6.12.94+deb13-amd64', 'trixie'],
      ['6.12.107+deb13-amd64', 'trixie'],
      ['6.12.107+deb13-cloud-amd64', 'trixie'],
      ['6.12.107+deb13-rt-amd64', 'trixie'],
      ['6.12.117+deb13-amd64', 'trixie-security'],
    ]);
    await expect(discoverKernels({ ...options, distro: 'debian', releases: ['buster'] })).rejects.toMatchObject({
      code: 'KFARM_TARGET_UNKNOWN',
    });
    for (const target of targets)
      expect(parseTargetId(target.id)).toEqual({ distro: 'debian', release: target.release, kernel: target.kernel });
  });

  const security = (archive: TestArchive) => `${archive.url}${archive.indexPath('bookworm-security')}`;

  it('fails naming the URL when a suite answers HTTP 500', async () => {
    archive.fail(archive.indexPath('bookworm-security'), 500);
    await expect(discoverReleaseIndex('bookworm', options)).rejects.toThrow(
      `cannot fetch ${security(archive)}: HTTP 500`,
    );
  });

  it('fails naming the URL when the index is not valid xz', async () => {
    await archive.serve('bookworm-security', new TextEncoder().encode('this is not xz data\n'.repeat(50)));
    await expect(discoverReleaseIndex('bookworm', options)).rejects.toThrow(
      new RegExp(`cannot fetch ${escape(security(archive))}: xz -dc failed: .*format`),
    );
  });

  it('fails naming the URL when the index does not match InRelease', async () => {
    const good = await xz(await fixture('bookworm-security'));
    await archive.serve('bookworm-security', good, await xz('Package: other\nVersion: 1\n'));
    await expect(discoverReleaseIndex('bookworm', options)).rejects.toThrow(
      `cannot fetch ${security(archive)}: does not match`,
    );
  });

  it('fetches index and InRelease again when they disagree once, as while the archive updates', async () => {
    const good = await xz(await fixture('bookworm-security'));
    await archive.serve('bookworm-security', good, await xz('Package: other\nVersion: 1\n'));
    const path = archive.indexPath('bookworm-security');
    // Changed once InRelease has been served, whichever of the pair came first: the first pair disagrees.
    archive.afterHit.set(archive.releasePath('bookworm-security'), () => void archive.serve('bookworm-security', good));
    const result = await discoverReleaseIndex('bookworm', options);
    expect(result.kernels.some((k) => k.suite === 'bookworm-security')).toBe(true);
    expect(archive.hits.get(path)).toBe(2);
  });

  it('fails when a suite that must have packages has none, or InRelease is missing', async () => {
    await archive.serve('bookworm-security', '');
    await expect(discoverReleaseIndex('bookworm', options)).rejects.toThrow(
      `cannot fetch ${security(archive)}: the index lists no packages`,
    );
    await archive.serve('bookworm-security', await fixture('bookworm-security'));
    archive.routes.delete(archive.releasePath('bookworm'));
    await expect(discoverReleaseIndex('bookworm', { ...options, refresh: true })).rejects.toThrow(
      `cannot fetch ${archive.url}/debian/dists/bookworm/InRelease: HTTP 404`,
    );
  });

  it('fails naming the URL when nothing listens', async () => {
    const url = archive.url;
    await archive.close();
    await expect(discoverReleaseIndex('sid', { ...options, mirror: `${url}/debian` })).rejects.toThrow(
      `cannot fetch ${url}/debian/dists/sid/`,
    );
  });

  it.runIf(signatureCheck)('rejects an unsigned InRelease when signatures are checked', async () => {
    await expect(discoverReleaseIndex('bookworm', { ...options, verifySignature: true })).rejects.toThrow(
      new RegExp(`bad signature on ${escape(archive.url)}/debian(-security)?/dists/bookworm[a-z-]*/InRelease`),
    );
  });

  it('stops when its signal is aborted', async () => {
    await archive.serve('sid', await fixture('sid'));
    archive.routes.set(archive.indexPath('sid'), { status: 200, body: await xz(await fixture('sid')), hang: true });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    await expect(discoverReleaseIndex('sid', { ...options, signal: controller.signal })).rejects.toMatchObject({
      code: 'KFARM_INTERRUPTED',
    });
  });

  it('serves a second run from the cache, until refresh or expiry', async () => {
    const first = await discoverReleaseIndex('trixie', { ...options, includeBackports: false });
    const name = `${archive.url.replace(/[^A-Za-z0-9._-]+/g, '_')}_debian_dists_trixie.json`;
    expect(await readdir(join(cacheDir, 'index'))).toContain(name);
    const entry = JSON.parse(await readFile(join(cacheDir, 'index', name), 'utf8')) as { fetchedAt: number };
    expect(Date.now() - entry.fetchedAt).toBeLessThan(60_000);

    for (const suite of SUITES) archive.fail(archive.indexPath(suite), 500);
    expect(await discoverReleaseIndex('trixie', { ...options, includeBackports: false })).toEqual(first);
    await expect(
      discoverReleaseIndex('trixie', { ...options, includeBackports: false, refresh: true }),
    ).rejects.toThrow('HTTP 500');
    await expect(discoverReleaseIndex('trixie', { ...options, includeBackports: false, ttlMs: 0 })).rejects.toThrow(
      'HTTP 500',
    );
  });
});

describe('parseTargetId', () => {
  it('splits and formats <distro>/<release>/<kernel-release>', () => {
    const id = { distro: 'debian', release: 'trixie', kernel: '6.12.115+deb13.1-rt-amd64' };
    expect(parseTargetId(formatTargetId(id))).toEqual(id);
  });

  it.each([
    'foo',
    'debian/bookworm',
    'debian/bookworm/',
    'debian//6.1.0-47-amd64',
    'debian/bookworm/6.1.0-47-amd64/x',
    'debian/bookworm/amd64',
    'debian/bookworm/6.1 0',
  ])('rejects %j', (bad) => {
    expect(() => parseTargetId(bad)).toThrow(
      `--target ${JSON.stringify(bad)}: expected <distro>/<release>/<kernel-release>, e.g. debian/bookworm/6.1.0-47-amd64`,
    );
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

async function hasSignatureCheck(): Promise<boolean> {
  try {
    await access('/usr/share/keyrings/debian-archive-keyring.gpg');
    await execa('gpgv', ['--version']);
    return true;
  } catch {
    return false;
  }
}
