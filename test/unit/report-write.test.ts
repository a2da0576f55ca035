import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { FarmReport } from '../../src/model/report.js';
import { writeReports } from '../../src/report/write-reports.js';
import { readCapped, tailFile } from '../../src/util/read-file.js';

const fixtures = new URL('../fixtures/report/', import.meta.url);

/** An output directory as `kfarm build test/fixtures/broken` left it (real report.json and make.logs), plus a built kernel. */
function brokenRun(): { out: string; report: FarmReport } {
  const out = mkdtempSync(join(tmpdir(), 'kfarm-reports-'));
  const report = JSON.parse(readFileSync(new URL('broken.report.json', fixtures), 'utf8')) as FarmReport;
  for (const target of report.targets) {
    const gcc = target.release === 'bookworm' ? 'gcc12' : 'gcc14';
    mkdirSync(dirname(join(out, target.log!)), { recursive: true });
    copyFileSync(new URL(`${gcc}-broken.make.log`, fixtures), join(out, target.log!));
  }
  report.targets.push({
    id: 'debian/bookworm/6.1.0-55-amd64',
    distro: 'debian',
    release: 'bookworm',
    kernel: '6.1.0-55-amd64',
    arch: 'x86_64',
    status: 'failed',
    durationMs: 5,
    artifacts: [],
    error: 'hostile log path',
    log: '../../etc/passwd',
  });
  report.counts.failed++;
  return { out, report };
}

describe('writeReports', () => {
  it('writes junit.xml and summary.md with first errors read from the make.logs; nothing for GitHub outside Actions', async () => {
    const { out, report } = brokenRun();
    const before = JSON.stringify(report);
    const printed: string[] = [];
    const written = await writeReports(out, report, {
      sourceDir: '/ws/repo/test/fixtures/broken',
      env: { GITHUB_WORKSPACE: '/ws/repo' },
      stdout: (t) => printed.push(t),
    });
    expect(written.junit).toBe(join(out, 'junit.xml'));
    expect(written.summary).toBe(join(out, 'summary.md'));
    expect(readdirSync(out).sort()).toEqual(['dkms', 'junit.xml', 'report.html', 'report.json', 'summary.md']); // no temp files
    expect(JSON.stringify(report)).toBe(before); // the report object itself is not changed
    // report.json gets the kernel-compatibility analysis, from the first errors read out of the make.logs.
    const written_ = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as { compatibility: unknown[] };
    expect(written_.compatibility.length).toBeGreaterThan(0);
    expect(written.compatibility).toEqual(written_.compatibility);

    const junit = readFileSync(written.junit, 'utf8');
    const lint = spawnSync('xmllint', ['--noout', written.junit], { encoding: 'utf8' });
    if (!lint.error) expect(lint.status, lint.stderr).toBe(0);
    expect(junit).toContain(
      `<testsuite name="kf_broken 1.0" tests="3" failures="3" errors="0" skipped="0" time="1.976"`,
    );
    expect(junit).toContain(
      `<failure message="kf_broken.c:7:19: &apos;this_symbol_does_not_exist&apos; undeclared (first use in this function)" type="failed">`,
    );
    expect(junit).toContain('<system-out>DKMS make.log for kf_broken-1.0 for kernel 6.12.117+deb13-amd64 (x86_64)');
    expect(junit).toContain('<failure message="hostile log path" type="failed">hostile log path</failure>');

    const summary = readFileSync(written.summary, 'utf8');
    expect(summary).toContain(
      "- `kf_broken.c:7:19: 'this_symbol_does_not_exist' undeclared (first use in this function)` on " +
        'debian/bookworm/6.1.0-56-amd64, debian/trixie/6.12.117+deb13-amd64\n',
    );

    expect(written.diagnostics.get('debian/bookworm/6.1.0-56-amd64')).toEqual([
      {
        file: 'kf_broken.c',
        line: 7,
        column: 19,
        message: "'this_symbol_does_not_exist' undeclared (first use in this function)",
      },
    ]);
    expect(written.diagnostics.has('debian/bookworm/6.1.0-55-amd64')).toBe(false);
    expect(written.annotations[0]).toBe(
      '::error file=test/fixtures/broken/kf_broken.c,line=7,col=19,' +
        'title=kfarm%3A fails on 2 kernels%3A 6.1.0-56-amd64%2C 6.12.117+deb13-amd64' +
        "::'this_symbol_does_not_exist' undeclared (first use in this function)",
    );
    expect(printed).toEqual([]);
  });

  it('under GitHub Actions: appends the summary to $GITHUB_STEP_SUMMARY and prints the annotations', async () => {
    const { out, report } = brokenRun();
    const stepSummary = join(out, '..', `step-summary-${Date.now()}.md`);
    writeFileSync(stepSummary, '# earlier step\n');
    const printed: string[] = [];
    const env = { GITHUB_ACTIONS: 'true', GITHUB_STEP_SUMMARY: stepSummary, GITHUB_WORKSPACE: '/ws/repo' };
    const written = await writeReports(out, report, {
      sourceDir: '/ws/repo/test/fixtures/broken',
      env,
      stdout: (t) => printed.push(t),
    });
    const summary = readFileSync(written.summary, 'utf8');
    expect(readFileSync(stepSummary, 'utf8')).toBe(`# earlier step\n${summary}\n`);
    expect(printed.join('')).toBe(written.annotations.map((a) => `${a}\n`).join(''));
    expect(written.annotations).toEqual([
      '::error file=test/fixtures/broken/kf_broken.c,line=7,col=19,' +
        'title=kfarm%3A fails on 2 kernels%3A 6.1.0-56-amd64%2C 6.12.117+deb13-amd64' +
        "::'this_symbol_does_not_exist' undeclared (first use in this function)",
      '::error title=kfarm%3A fails on 1 kernel%3A 6.1.0-55-amd64::hostile log path',
    ]);
  });

  it('reads at most the cap from the start, and tails from the end', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kfarm-tail-'));
    const file = join(dir, 'make.log');
    writeFileSync(file, Array.from({ length: 1000 }, (_, i) => `line ${i}`).join('\n') + '\n');
    expect(await readCapped(file, 12)).toBe('line 0\nline ');
    expect(await readCapped(join(dir, 'missing'), 12)).toBeUndefined();
    expect(await tailFile(file, 3)).toBe('line 997\nline 998\nline 999');
    // From the middle: the partial first line is dropped.
    expect(await tailFile(file, 100, 20)).toBe('line 998\nline 999');
    expect(await tailFile(join(dir, 'missing'), 3)).toBe('');
  });
});
