import { describe, expect, it } from 'vitest';
import { cell, codeSpan, compactList, duration, failureGroups, renderSummary } from '../../src/report/markdown.js';
import { kernels, report, result } from './report-fixtures.js';

const undeclared = { file: 'kf.c', line: 7, column: 19, message: "'x' undeclared (first use in this function)" };
const implicitGcc12 = {
  file: 'kf.c',
  line: 14,
  column: 9,
  message: "implicit declaration of function 'setup_timer' [-Werror=implicit-function-declaration]",
};
const implicitGcc14 = {
  ...implicitGcc12,
  message: "implicit declaration of function 'setup_timer' [-Wimplicit-function-declaration]",
};

describe('renderSummary', () => {
  it('twelve kernels failing with two distinct errors make two failure lines', () => {
    const ks = kernels(12);
    const targets = [
      result('bookworm', '6.1.0-56-amd64', 'built'),
      ...ks.slice(0, 9).map((k) =>
        result('trixie', k, 'failed', {
          firstError: undeclared,
          error: `make exited 2 (bad return status for module build on kernel ${k} (x86_64))`,
        }),
      ),
      // The same error tagged differently by gcc 12 and gcc 14 is still one group.
      ...ks
        .slice(9)
        .map((k, i) =>
          result(i === 0 ? 'bookworm' : 'trixie', k, 'failed', { firstError: i === 0 ? implicitGcc12 : implicitGcc14 }),
        ),
    ];
    const md = renderSummary(report(targets));
    const lines = md.split('\n');
    expect(lines[0]).toBe('## kf 1.0: 13 kernels — 1 built, 12 failed');
    const failures = lines.slice(lines.indexOf('### Failures') + 1).filter((l) => l.startsWith('- '));
    expect(failures).toEqual([
      "- `kf.c:7:19: 'x' undeclared (first use in this function)` on " +
        'debian/trixie/6.12.90+deb13-amd64, debian/trixie/6.12.91+deb13-amd64, debian/trixie/6.12.92+deb13-amd64 and 6 more',
      "- `kf.c:14:9: implicit declaration of function 'setup_timer'` on " +
        'debian/bookworm/6.12.99+deb13-amd64, debian/trixie/6.12.100+deb13-amd64, debian/trixie/6.12.101+deb13-amd64',
    ]);
  });

  it('one table row per kernel with the status emoji, duration and note', () => {
    const targets = [
      result('bookworm', '6.1.0-56-amd64', 'built', { durationMs: 1300 }),
      result('bookworm', '6.1.0-55-amd64', 'cached', { durationMs: 40 }),
      result('trixie', '6.12.117+deb13-amd64', 'failed', {
        durationMs: 65_000,
        firstError: { file: 'a|b.c', line: 1, message: 'use of `x` | y' },
      }),
      result('trixie', '6.12.94+deb13-amd64', 'timeout', { durationMs: 1_800_000, error: 'build exceeded 1800 s' }),
      result('trixie', '6.12.95+deb13-amd64', 'oom', { error: 'out of memory (limit 4 GiB)' }),
      result('bookworm', '6.1.0-54-amd64', 'skipped', { error: 'BUILD_EXCLUSIVE_KERNEL="^6\\.12" does not match' }),
      result('sid', '6.16.1-amd64', 'expected-failure', { expected: 'upstream API change' }),
    ];
    const md = renderSummary(report(targets, { notRun: ['debian/forky/6.17.1-amd64'], partial: true }));
    const lines = md.split('\n');
    expect(lines[0]).toBe(
      '## kf 1.0: 8 kernels — 1 built, 1 cached, 1 skipped, 1 expected-failure, 1 failed, 1 timeout, 1 oom, ' +
        '1 not run (interrupted: partial)',
    );
    expect(lines.slice(2, 12)).toEqual([
      '| Kernel | Release | Status | Duration | Note |',
      '| --- | --- | --- | --- | --- |',
      // By release and flavour, oldest kernel first.
      '| debian/bookworm/6.1.0-54-amd64 | bookworm | ⏭️ skipped | 1.5 s | BUILD\\_EXCLUSIVE\\_KERNEL="^6.12" does not match |'.replace(
        '^6.12',
        '^6\\\\.12',
      ),
      '| debian/bookworm/6.1.0-55-amd64 | bookworm | ♻️ cached | 0.0 s |  |',
      '| debian/bookworm/6.1.0-56-amd64 | bookworm | ✅ built | 1.3 s |  |',
      '| debian/trixie/6.12.94+deb13-amd64 | trixie | ⏱️ timeout | 30m 00s | build exceeded 1800 s |',
      '| debian/trixie/6.12.95+deb13-amd64 | trixie | 💥 oom | 1.5 s | out of memory (limit 4 GiB) |',
      '| debian/trixie/6.12.117+deb13-amd64 | trixie | ❌ failed | 1m 05s | a\\|b.c:1: use of \\`x\\` \\| y |',
      '| debian/sid/6.16.1-amd64 | sid | ⚠️ expected-failure | 1.5 s | expected: upstream API change |',
      '| debian/forky/6.17.1-amd64 | forky | not run |  | the run stopped before this target |',
    ]);
    // Every table row has exactly 6 unescaped pipes: no cell content breaks the table.
    for (const row of lines.slice(2, 12)) expect(row.replace(/\\\|/g, '').split('|')).toHaveLength(7);
    expect(lines.filter((l) => l.startsWith('- '))).toEqual([
      '- trixie amd64: fails on 6.12.94+deb13-amd64 with build exceeded 1800 s (timeout)',
      '- trixie amd64: fails on 6.12.95+deb13-amd64 with out of memory (limit 4 GiB) (oom)',
      '- trixie amd64: fails on 6.12.117+deb13-amd64 with a\\|b.c:1: use of \\`x\\` \\| y',
      '- sid amd64: fails on 6.16.1-amd64 with upstream API change (expected)',
      '- ``a|b.c:1: use of `x` | y`` on debian/trixie/6.12.117+deb13-amd64',
      '- ⏱️ timeout: build exceeded 1800 s on debian/trixie/6.12.94+deb13-amd64',
      '- 💥 oom: out of memory (limit 4 GiB) on debian/trixie/6.12.95+deb13-amd64',
    ]);
  });

  it('failures without a compiler error group by reason with the kernel release taken out', () => {
    const ks = kernels(5);
    const targets = ks.map((k) =>
      result('trixie', k, 'failed', {
        error: `make exited 2 (bad return status for module build on kernel ${k} (x86_64))`,
      }),
    );
    const groups = failureGroups(targets);
    expect(groups).toHaveLength(1);
    expect(groups[0]!.label).toBe('make exited 2 (bad return status for module build on kernel <kernel> (x86_64))');
    expect(renderSummary(report(targets))).toContain(
      '- make exited 2 (bad return status for module build on kernel \\<kernel\\> (x86\\_64)) on ' +
        'debian/trixie/6.12.90+deb13-amd64, debian/trixie/6.12.91+deb13-amd64, debian/trixie/6.12.92+deb13-amd64 and 2 more',
    );
  });

  it('no failures section when nothing failed; deterministic', () => {
    const r = report([result('bookworm', '6.1.0-56-amd64', 'built')]);
    expect(renderSummary(r)).not.toContain('Failures');
    expect(renderSummary(r)).toBe(renderSummary(r));
    expect(renderSummary(r).split('\n')[0]).toBe('## kf 1.0: 1 kernel — 1 built');
  });

  it('helpers', () => {
    expect(compactList(['a', 'b', 'c', 'd'])).toBe('a, b, c, d');
    expect(compactList(['a', 'b', 'c', 'd', 'e'])).toBe('a, b, c and 2 more');
    expect(duration(950)).toBe('0.9 s');
    expect(duration(3_725_000)).toBe('1h 02m');
    expect(cell('a|b`c\nd')).toBe('a\\|b\\`c d');
    expect(codeSpan('plain')).toBe('`plain`');
    expect(codeSpan('`x`')).toBe('`` `x` ``');
  });
});
