import { describe, expect, it } from 'vitest';
import type { TargetResult } from '../../src/model/result.js';
import { byKernelVersion, compatibility, describeRange } from '../../src/report/compat.js';

const target = (
  release: string,
  kernel: string,
  status: TargetResult['status'],
  extra: Partial<TargetResult> = {},
): TargetResult => ({
  id: `debian/${release}/${kernel}`,
  distro: 'debian',
  release,
  kernel,
  arch: 'x86_64',
  status,
  durationMs: 1000,
  artifacts: [],
  ...extra,
});
const classCreate = "compatbreak.c:5:53: too many arguments to function 'class_create'";

const broke = {
  firstError: { file: 'compatbreak.c', line: 5, column: 53, message: "too many arguments to function 'class_create'" },
};

describe('compatibility', () => {
  it('orders kernels by Debian version per release and flavour, whatever the matrix order', () => {
    const lines = byKernelVersion([
      target('bookworm', '6.12.9+deb12-amd64', 'built'),
      target('bookworm', '6.1.0-57-amd64', 'built'),
      target('bookworm', '6.1.0-9-amd64', 'built'),
      target('bookworm', '6.1.0-57-cloud-amd64', 'built'),
      target('bookworm', '6.12.118+deb12-amd64', 'built'),
    ]);
    expect(lines.map((l) => l.map((t) => t.kernel))).toEqual([
      ['6.1.0-9-amd64', '6.1.0-57-amd64', '6.12.9+deb12-amd64', '6.12.118+deb12-amd64'],
      ['6.1.0-57-cloud-amd64'],
    ]);
  });

  it('"builds up to X, fails from Y with Z" for a break that lasts to the newest kernel', () => {
    const ranges = compatibility([
      target('bookworm', '6.12.118+deb12-amd64', 'failed', broke),
      target('bookworm', '6.1.0-56-amd64', 'built'),
      target('bookworm', '6.12.9+deb12-amd64', 'failed', broke),
      target('bookworm', '6.1.0-57-amd64', 'cached'),
    ]);
    expect(ranges).toEqual([
      {
        release: 'bookworm',
        flavour: 'amd64',
        stage: 'build',
        status: 'failed',
        signature: "compatbreak.c:5:53: too many arguments to function 'class_create'",
        ranges: [['6.12.9+deb12-amd64', '6.12.118+deb12-amd64']],
        kernels: 2,
        lastGood: '6.1.0-57-amd64',
        firstFailed: '6.12.9+deb12-amd64',
      },
    ]);
    expect(describeRange(ranges[0]!)).toBe(
      `bookworm amd64: builds up to 6.1.0-57-amd64, fails from 6.12.9+deb12-amd64 with ${classCreate}`,
    );
  });

  it('names every run, the last good kernel before and the first good one after; skipped kernels break a run', () => {
    const [range] = compatibility([
      target('trixie', '6.12.1+deb13-amd64', 'failed', broke),
      target('trixie', '6.12.2+deb13-amd64', 'skipped'),
      target('trixie', '6.12.3+deb13-amd64', 'failed', broke),
      target('trixie', '6.12.4+deb13-amd64', 'failed', broke),
      target('trixie', '6.12.5+deb13-amd64', 'built'),
    ]);
    expect(range?.ranges).toEqual([
      ['6.12.1+deb13-amd64', '6.12.1+deb13-amd64'],
      ['6.12.3+deb13-amd64', '6.12.4+deb13-amd64'],
    ]);
    expect(describeRange(range!)).toBe(
      'trixie amd64: fails on 6.12.1+deb13-amd64, 6.12.3+deb13-amd64 … 6.12.4+deb13-amd64 ' +
        `with ${classCreate}; builds again from 6.12.5+deb13-amd64`,
    );
  });

  it('groups failures with the kernel release taken out, and load failures on their own', () => {
    const timeout = (kernel: string) => ({ error: `build of ${kernel} exceeded 1800 s` });
    const ranges = compatibility([
      target('sid', '6.16.1-amd64', 'timeout', timeout('6.16.1-amd64')),
      target('sid', '6.16.2-amd64', 'timeout', timeout('6.16.2-amd64')),
      target('sid', '6.15.1-amd64', 'built', { verify: { status: 'loaded', durationMs: 1 } }),
      target('sid', '6.15.2-amd64', 'built', {
        verify: { status: 'load-failed', reason: 'kf: Unknown symbol foo (err -2)', durationMs: 1 },
      }),
    ]);
    expect(ranges.map(describeRange)).toEqual([
      'sid amd64: builds up to 6.15.2-amd64, fails from 6.16.1-amd64 with build of <kernel> exceeded 1800 s (timeout)',
      'sid amd64: loads up to 6.15.1-amd64, fails to load from 6.15.2-amd64 with kf: Unknown symbol foo (err -2)',
    ]);
  });
});
