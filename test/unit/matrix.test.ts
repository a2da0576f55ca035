import { describe, expect, it } from 'vitest';
import { parseMatrix } from '../../src/plan/matrix.js';
import { selectKernels } from '../../src/plan/resolve.js';
import type { ReleaseIndex } from '../../src/plan/debian-index.js';
import type { KernelTarget } from '../../src/plan/targets.js';

describe('matrix files', () => {
  it('parses selectors, flavours and backports with defaults', () => {
    const m = parseMatrix(
      [
        'distro: debian',
        'releases:',
        '  bookworm:',
        '    kernels: latest:2',
        '    flavours: [amd64, rt-amd64]',
        '    backports: true',
        '  trixie:',
        '  sid:',
        '    kernels: [7.2.13+deb14-amd64]',
        '',
      ].join('\n'),
      'm.yaml',
    );
    expect(m.releases).toEqual([
      {
        release: 'bookworm',
        kernels: { kind: 'latest', count: 2 },
        flavours: ['amd64', 'rt-amd64'],
        backports: true,
        line: 3,
      },
      { release: 'trixie', kernels: { kind: 'latest', count: 1 }, flavours: ['amd64'], backports: false, line: 7 },
      {
        release: 'sid',
        kernels: { kind: 'list', kernels: [{ name: '7.2.13+deb14-amd64', line: 9 }] },
        flavours: ['amd64'],
        backports: false,
        line: 8,
      },
    ]);
    expect(m.knownFailing).toEqual([]);
  });

  it('a single flavour may be a plain scalar: the list of that one', () => {
    const m = parseMatrix('distro: debian\nreleases:\n  bookworm:\n    flavours: cloud-amd64\n', 'm.yaml');
    expect(m.releases[0]?.flavours).toEqual(['cloud-amd64']);
  });

  it('parses build-deps for every release and per release, as a list or one string of names', () => {
    const m = parseMatrix(
      'distro: debian\nbuild-deps: [pkgconf, "libc6-dev"]\nreleases:\n  bookworm:\n    build-deps: pkg-config libxtables-dev\n  trixie:\n',
      'm.yaml',
    );
    expect(m.buildDeps).toEqual({ names: ['pkgconf', 'libc6-dev'], line: 2 });
    expect(m.releases[0]?.buildDeps).toEqual({ names: ['pkg-config', 'libxtables-dev'], line: 5 });
    expect(m.releases[1]?.buildDeps).toBeUndefined();
  });

  it('parses known-failing entries', () => {
    const m = parseMatrix(
      'distro: debian\nreleases:\n  trixie:\nknown-failing:\n  - kernel: "6.12.*"\n    reason: uses removed foo()\n',
      'm.yaml',
    );
    expect(m.knownFailing).toEqual([{ pattern: '6.12.*', reason: 'uses removed foo()' }]);
  });

  const bad: [string, string, RegExp][] = [
    ['invalid YAML', 'distro: debian\nreleases: [\n', /^m\.yaml:\d+: invalid YAML: /],
    ['another distro', 'distro: fedora\nreleases:\n  f40:\n', /^m\.yaml:1: distro: expected "debian"/],
    [
      'an unknown top-level key',
      'distro: debian\nrelease:\n  bookworm:\n',
      /^m\.yaml:2: unknown key "release": expected distro, releases, known-failing, build-deps$/,
    ],
    [
      'an unknown release key',
      'distro: debian\nreleases:\n  bookworm:\n    kernel: all\n',
      /^m\.yaml:4: unknown key "kernel": expected kernels, flavours, backports, build-deps$/,
    ],
    [
      'a bad selector',
      'distro: debian\nreleases:\n  bookworm:\n    kernels: newest\n',
      /^m\.yaml:4: bookworm: kernels: expected latest, latest:N \(N from 1 to 1000\), all or a list of kernel releases, got "newest"$/,
    ],
    ['latest:0', 'distro: debian\nreleases:\n  bookworm:\n    kernels: latest:0\n', /^m\.yaml:4: /],
    [
      'a latest:N too large to mean anything',
      'distro: debian\nreleases:\n  bookworm:\n    kernels: latest:99999999999999999999\n',
      /^m\.yaml:4: bookworm: kernels: expected latest, latest:N \(N from 1 to 1000\)/,
    ],
    [
      'an unknown flavour',
      'distro: debian\nreleases:\n  bookworm:\n    flavours: [amd64, arm64]\n',
      /^m\.yaml:4: bookworm: unknown flavour "arm64"/,
    ],
    [
      'a non-boolean backports',
      'distro: debian\nreleases:\n  bookworm:\n    backports: maybe\n',
      /^m\.yaml:4: bookworm: backports: expected true or false$/,
    ],
    ['no releases', 'distro: debian\nreleases: {}\n', /^m\.yaml:2: releases: expected a mapping/],
    [
      'known-failing without a reason',
      'distro: debian\nreleases:\n  trixie:\nknown-failing:\n  - kernel: "6.12.*"\n',
      /^m\.yaml:5: known-failing: reason: expected/,
    ],
    [
      'known-failing not a list',
      'distro: debian\nreleases:\n  trixie:\nknown-failing: 6.12\n',
      /^m\.yaml:4: known-failing: expected a list/,
    ],
    [
      'build-deps that are not names',
      'distro: debian\nreleases:\n  trixie:\n    build-deps: [{a: b}]\n',
      /^m\.yaml:4: trixie: build-deps: expected package names/,
    ],
  ];
  for (const [name, text, message] of bad) {
    it(`rejects ${name} with file:line`, () => {
      expect(() => parseMatrix(text, 'm.yaml')).toThrow(message);
    });
  }
});

function kernel(
  release: string,
  kver: string,
  version: string,
  options: { backports?: boolean; suite?: string } = {},
): KernelTarget {
  const flavour = kver.endsWith('-rt-amd64') ? 'rt-amd64' : kver.endsWith('-cloud-amd64') ? 'cloud-amd64' : 'amd64';
  return {
    id: `debian/${release}/${kver}`,
    distro: 'debian',
    release,
    kernel: kver,
    flavour,
    arch: 'x86_64',
    headersPackage: `linux-headers-${kver}`,
    headersVersion: version,
    commonPackage: 'x',
    suite: options.suite ?? release,
    backports: options.backports ?? false,
  };
}

describe('kernel selection', () => {
  const index: ReleaseIndex = {
    release: 'bookworm',
    kernels: [
      kernel('bookworm', '6.1.0-50-amd64', '6.1.170-1'),
      kernel('bookworm', '6.1.0-55-amd64', '6.1.190-1', { suite: 'bookworm-security' }),
      kernel('bookworm', '6.1.0-56-amd64', '6.1.192-2', { suite: 'bookworm-security' }),
      kernel('bookworm', '6.1.0-56-rt-amd64', '6.1.192-2', { suite: 'bookworm-security' }),
      kernel('bookworm', '6.12.117+deb12-amd64', '6.12.117-1~deb12u1', { suite: 'bookworm-security' }),
      kernel('bookworm', '6.12.120+bpo-amd64', '6.12.120-1~bpo12+1', { backports: true, suite: 'bookworm-backports' }),
    ],
    defaults: { amd64: '6.1.0-56-amd64', 'rt-amd64': '6.1.0-56-rt-amd64' },
  };
  const spec = (kernels: unknown, extra: object = {}) =>
    ({ release: 'bookworm', kernels, flavours: ['amd64'], backports: false, line: 3, ...extra }) as never;
  const ids = (ks: KernelTarget[]) => ks.map((k) => k.kernel);

  it('latest is the metapackage default, not the highest version', () => {
    expect(ids(selectKernels(index, spec({ kind: 'latest', count: 1 }), 'm.yaml'))).toEqual(['6.1.0-56-amd64']);
  });
  it('latest:N stays in the default kernel series, newest first', () => {
    expect(ids(selectKernels(index, spec({ kind: 'latest', count: 3 }), 'm.yaml'))).toEqual([
      '6.1.0-56-amd64',
      '6.1.0-55-amd64',
      '6.1.0-50-amd64',
    ]);
  });
  it('all takes every kernel of the flavours, backports only when asked', () => {
    expect(ids(selectKernels(index, spec({ kind: 'all' }), 'm.yaml'))).toEqual([
      '6.1.0-50-amd64',
      '6.1.0-55-amd64',
      '6.1.0-56-amd64',
      '6.12.117+deb12-amd64',
    ]);
    expect(ids(selectKernels(index, spec({ kind: 'all' }, { backports: true }), 'm.yaml'))).toContain(
      '6.12.120+bpo-amd64',
    );
  });
  it('one latest per flavour', () => {
    expect(
      ids(selectKernels(index, spec({ kind: 'latest', count: 1 }, { flavours: ['amd64', 'rt-amd64'] }), 'm.yaml')),
    ).toEqual(['6.1.0-56-amd64', '6.1.0-56-rt-amd64']);
  });
  it('an explicit list must name published kernels', () => {
    expect(() =>
      selectKernels(index, spec({ kind: 'list', kernels: [{ name: '6.1.0-99-amd64', line: 5 }] }), 'm.yaml'),
    ).toThrow(/^m\.yaml:5: bookworm: unknown kernel 6\.1\.0-99-amd64; run `kfarm targets --release bookworm`/);
  });
});

describe('known-failing', () => {
  it('globs match the kernel release, or the target id when the pattern has a slash', async () => {
    const { applyKnownFailing } = await import('../../src/model/known-failing.js');
    const failed = {
      id: 'debian/trixie/6.12.94+deb13-amd64',
      kernel: '6.12.94+deb13-amd64',
      status: 'failed',
    } as never;
    const known = [{ pattern: '6.12.*', reason: 'r1' }];
    expect(applyKnownFailing(failed, known)).toMatchObject({ status: 'expected-failure', expected: 'r1' });
    expect(applyKnownFailing(failed, [{ pattern: 'debian/bookworm/*', reason: 'r2' }])).toMatchObject({
      status: 'failed',
    });
    expect(applyKnownFailing(failed, [{ pattern: 'debian/trixie/*', reason: 'r3' }])).toMatchObject({
      status: 'expected-failure',
    });
    expect(applyKnownFailing(failed, [{ pattern: '6.1.*', reason: 'r4' }])).toMatchObject({ status: 'failed' });
    const built = { ...(failed as object), status: 'built' } as never;
    expect(applyKnownFailing(built, known)).toMatchObject({ status: 'built', expected: 'r1' });
  });
});
