import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { FarmReport } from '../../src/model/report.js';
import type { KernelTarget } from '../../src/model/result.js';
import { compareDebianVersions } from '../../src/util/debian-version.js';
import { fixture, repoRoot, requireEngine, runKfarm, supportedTarget, tempOut } from '../helpers/engine.js';

/**
 * Reports on a module that breaks from some kernel on (test/fixtures/compatbreak: class_create() lost its owner
 * argument in Linux 6.4), built with real gcc for real kernels: bookworm's 6.1 kernel and its newest 6.12 one
 * (bookworm-security carries both), and trixie's. The first error points at the module's line, the kernel header
 * kept as context, and the CLI, summary.md and report.json say where it breaks.
 */

let out: string;
let build: Awaited<ReturnType<typeof runKfarm>>;
let bookworm61: string;
let bookworm612: string;
let trixie: string;

beforeAll(async () => {
  await requireEngine();
  bookworm61 = (await supportedTarget('bookworm')).kernel;
  trixie = (await supportedTarget('trixie')).kernel;
  const listed = await runKfarm(['targets', '--release', 'bookworm', '--flavour', 'amd64', '--json']);
  const kernels = (JSON.parse(listed.stdout) as KernelTarget[])
    .map((t) => t.kernel)
    .filter((k) => k.includes('+deb12-'));
  bookworm612 = kernels.sort(compareDebianVersions).pop() as string;
  out = await tempOut('kfarm-report-');
  const targets = [`debian/bookworm/${bookworm612}`, `debian/bookworm/${bookworm61}`, `debian/trixie/${trixie}`];
  build = await runKfarm(['build', fixture('compatbreak'), '--out', out, ...targets.flatMap((t) => ['--target', t])]);
});

describe('reports of a module that breaks from a kernel on', () => {
  it('the CLI, summary.md and report.json say it builds up to 6.1 and fails from 6.12, with the line to fix', async () => {
    expect(build.exitCode, build.stderr).toBe(1);
    const bookwormLine =
      `bookworm amd64: builds up to ${bookworm61}, fails from ${bookworm612} with compatbreak.c:5:66: ` +
      "passing argument 1 of 'class_create' from incompatible pointer type";
    const trixieLine = `trixie amd64: fails on ${trixie} with compatbreak.c:5:66: passing argument 1 of 'class_create'`;
    expect(build.stdout).toContain(`kernel compatibility:\n  ${bookwormLine}`);
    expect(build.stdout).toContain(`  ${trixieLine}`);

    const summary = await readFile(join(out, 'summary.md'), 'utf8');
    expect(summary).toContain('### Kernel compatibility');
    expect(summary).toContain(`- ${bookwormLine.replace(/_/g, '\\_')}`);
    // Rows oldest kernel first within bookworm, whatever order the targets were given in.
    expect(summary.indexOf(`debian/bookworm/${bookworm61} `)).toBeLessThan(
      summary.indexOf(`debian/bookworm/${bookworm612} `),
    );

    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as FarmReport;
    const failed = report.targets.find((t) => t.kernel === bookworm612);
    expect(failed?.firstError).toMatchObject({ file: 'compatbreak.c', line: 5, column: 66 });
    expect(failed?.firstError?.context).toMatch(
      /^\/usr\/src\/linux-headers-6\.12\.\d+\+deb12-common\/include\/linux\/init\.h:\d+:\d+$/,
    );
    // A target's duration is its own work: the wait for its builder image is the `image` phase, not part of it.
    for (const t of report.targets) {
      const { image: _image, ...own } = t.phases ?? {};
      const work = Object.values(own).reduce((sum, ms) => sum + (ms ?? 0), 0);
      expect(t.durationMs).toBeLessThanOrEqual(work + 2000);
    }
    expect(report.compatibility).toEqual([
      expect.objectContaining({
        release: 'bookworm',
        flavour: 'amd64',
        stage: 'build',
        lastGood: bookworm61,
        firstFailed: bookworm612,
        ranges: [[bookworm612, bookworm612]],
      }),
      expect.objectContaining({ release: 'trixie', firstFailed: trixie }),
    ]);
  });

  it('kfarm report writes the same reports anew from report.json, and annotates the module’s own line', async () => {
    const before = await readFile(join(out, 'summary.md'), 'utf8');
    await rm(join(out, 'summary.md'));
    await rm(join(out, 'junit.xml'));
    const again = await runKfarm(['report', out, '--source', 'test/fixtures/compatbreak'], {
      env: { GITHUB_ACTIONS: 'true', GITHUB_WORKSPACE: repoRoot },
    });
    expect(again.exitCode, again.stderr).toBe(1);
    expect(await readFile(join(out, 'summary.md'), 'utf8')).toBe(before);
    expect(await readFile(join(out, 'junit.xml'), 'utf8')).toContain('compatbreak.c:5:66');
    expect(again.stdout).toMatch(/^::error file=test\/fixtures\/compatbreak\/compatbreak\.c,line=5,col=66,/m);
    expect(again.stdout).toContain(`kernel compatibility:\n  bookworm amd64: builds up to ${bookworm61}`);

    const missing = await runKfarm(['report', join(out, 'nope')]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/^kfarm: .*nope\/report\.json: not found/);
  });
});
