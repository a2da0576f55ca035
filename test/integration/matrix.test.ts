import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import type { TargetResult } from '../../src/model/result.js';
import { runFarm } from '../../src/farm/run.js';
import { releaseSources, resolveTargets } from '../../src/plan/resolve.js';
import type { KernelTarget } from '../../src/plan/targets.js';
import { cli, example, fixture, kfarmContainers, requireEngine } from '../helpers/engine.js';

let docker: Docker;
let work: string;
let bookworm: KernelTarget[];
let trixie: KernelTarget[];

const matrix = `distro: debian
releases:
  bookworm:
    kernels: latest:3
  trixie:
    kernels: latest:3
known-failing:
  - kernel: "{{expected}}"
    reason: "needs the 6.12 API port (issue #7)"
`;

beforeAll(async () => {
  docker = await requireEngine();
  work = await mkdtemp(join(tmpdir(), 'kfarm-matrix-'));
  await cp(fixture('mixed'), join(work, 'src'), { recursive: true });
  const targets = await resolveTargets({ matrix: await writeMatrix() });
  bookworm = targets.filter((t) => t.release === 'bookworm');
  trixie = targets.filter((t) => t.release === 'trixie');
  expect(bookworm).toHaveLength(3);
  expect(trixie).toHaveLength(3);
  const outcomes = [
    [bookworm[0], 'build'],
    [bookworm[1], 'fail'],
    [bookworm[2], 'skip'],
    [trixie[0], 'fail'],
    [trixie[1], 'fail'],
    [trixie[2], 'hang'],
  ] as const;
  await writeFile(join(work, 'src/outcomes'), outcomes.map(([t, o]) => `${t?.kernel} ${o}`).join('\n') + '\n');
  await writeMatrix(trixie[1]?.kernel);
  // Prepare the six builder images first: the runs below use a 30 s build limit, which a hello build must not
  // miss because a fresh machine is still bootstrapping the other images beside it.
  const warm = await runFarm({
    source: example('hello'),
    out: join(work, 'warm'),
    targets,
    sources: releaseSources,
    cache: false,
  });
  expect(warm.report.counts.built).toBe(6);
});

async function writeMatrix(expected = 'none') {
  const path = join(work, 'matrix.yaml');
  await writeFile(path, matrix.replace('{{expected}}', expected));
  return path;
}

describe('matrix run over 6 kernels in 2 releases with mixed outcomes', () => {
  it('reports built, failed, skipped, expected-failure and timeout, isolated from each other', async () => {
    const out = join(work, 'out');
    const summaryFile = join(work, 'step-summary.md');
    await writeFile(summaryFile, '# earlier step\n');
    const run = await execa(
      'node',
      [
        cli,
        'build',
        join(work, 'src'),
        '--matrix',
        join(work, 'matrix.yaml'),
        '--out',
        out,
        '--timeout',
        '30',
        '--jobs',
        '2',
      ],
      {
        reject: false,
        env: { CI: 'true', GITHUB_ACTIONS: 'true', GITHUB_STEP_SUMMARY: summaryFile, GITHUB_WORKSPACE: work },
      },
    );
    expect(run.exitCode, run.stderr).toBe(1);

    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
      targets: TargetResult[];
      counts: Record<string, number>;
    };
    const status = (t: KernelTarget | undefined) => report.targets.find((r) => r.id === t?.id);
    expect(status(bookworm[0])?.status).toBe('built');
    expect(status(bookworm[1])?.status).toBe('failed');
    expect(status(bookworm[2])?.status).toBe('skipped');
    expect(status(trixie[0])?.status).toBe('failed');
    expect(status(trixie[1])?.status).toBe('expected-failure');
    expect(status(trixie[1])?.expected).toBe('needs the 6.12 API port (issue #7)');
    expect(status(trixie[2])?.status).toBe('timeout');
    expect(report.counts).toMatchObject({ built: 1, failed: 2, skipped: 1, 'expected-failure': 1, timeout: 1 });
    for (const failed of [status(bookworm[1]), status(trixie[0])]) {
      expect(failed?.firstError).toMatchObject({ file: 'kf_mixed.c', line: 7 });
      expect(failed?.firstError?.message).toMatch(/implicit declaration of function 'kf_mixed_no_such_function'/);
    }
    expect(status(bookworm[0])?.phases).toMatchObject({
      image: expect.any(Number),
      start: expect.any(Number),
      build: expect.any(Number),
      copyOut: expect.any(Number),
    });
    expect(await kfarmContainers(docker)).toEqual([]);

    // junit.xml: one testcase per target; failures for failed and timeout, skipped for skipped and expected.
    const junit = await readFile(join(out, 'junit.xml'), 'utf8');
    const cases = [
      ...junit.matchAll(/<testcase classname="([^"]+)" name="([^"]+)"[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g),
    ];
    expect(cases.map((c) => c[2]).sort()).toEqual([...bookworm, ...trixie].map((t) => t.id).sort());
    const body = (t: KernelTarget | undefined) => cases.find((c) => c[2] === t?.id)?.[4] ?? '';
    expect(body(bookworm[1])).toMatch(
      /<failure message="kf_mixed\.c:7:\d+: implicit declaration of function &apos;kf_mixed_no_such_function&apos;/,
    );
    expect(body(bookworm[1])).toMatch(/<system-out>[\s\S]*DKMS make\.log for kf_mixed-1\.0/);
    expect(body(trixie[2])).toMatch(/<failure [^>]*type="timeout"/);
    expect(body(bookworm[2])).toMatch(/<skipped message="BUILD_EXCLUSIVE_KERNEL/);
    expect(body(trixie[1])).toMatch(/<skipped message="expected failure: needs the 6\.12 API port \(issue #7\)"/);
    expect(body(bookworm[0])).not.toMatch(/<failure|<skipped/);
    expect(junit).toMatch(/<testsuite name="kf_mixed 1\.0" tests="6" failures="3" errors="0" skipped="2"/);

    // summary.md: the same error on two kernels is one failure line naming both; the step summary gets it too.
    const summary = await readFile(join(out, 'summary.md'), 'utf8');
    const groups = summary.split('\n').filter((l) => l.startsWith('- ') && l.includes('kf_mixed_no_such_function'));
    expect(groups).toHaveLength(1);
    expect(groups[0]).toContain(bookworm[1]?.id);
    expect(groups[0]).toContain(trixie[0]?.id);
    expect(summary.split('\n').filter((l) => l.startsWith('| debian/'))).toHaveLength(6);
    const stepSummary = await readFile(summaryFile, 'utf8');
    expect(stepSummary.startsWith('# earlier step\n')).toBe(true);
    expect(stepSummary.trimEnd().endsWith(summary.trimEnd())).toBe(true);

    // GitHub annotations: mapped to the source path in the workspace, de-duplicated across kernels.
    const annotations = run.stdout.split('\n').filter((l) => l.startsWith('::error'));
    const compile = annotations.filter((l) => l.includes('file=src/kf_mixed.c,line=7,'));
    expect(compile).toHaveLength(1);
    expect(compile[0]).toMatch(/title=kfarm%3A fails on 2 kernels/);
  });

  it('--fail-fast stops scheduling after the first failure', async () => {
    const out = join(work, 'out-ff');
    const run = await execa(
      'node',
      [
        cli,
        'build',
        join(work, 'src'),
        '--matrix',
        join(work, 'matrix.yaml'),
        '--out',
        out,
        '--timeout',
        '30',
        '--jobs',
        '1',
        '--fail-fast',
        '--no-cache',
      ],
      {
        reject: false,
        env: { CI: 'true' },
      },
    );
    expect(run.exitCode).toBe(1);
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
      targets: TargetResult[];
      notRun?: string[];
    };
    // One build at a time: exactly one failure (a failed build or the hanging one's time limit; a known
    // failure does not stop the run), and no build started after it. Targets are reported in matrix order, not
    // completion order, so a skipped target may follow the failure in the list.
    const statuses = report.targets.map((t) => t.status);
    const stopping = statuses.filter((s) => s === 'failed' || s === 'timeout');
    expect(stopping, JSON.stringify(report)).toHaveLength(1);
    const others = statuses.filter((s) => s !== 'failed' && s !== 'timeout');
    expect(others.every((s) => s === 'built' || s === 'skipped' || s === 'expected-failure')).toBe(true);
    expect(report.notRun).toHaveLength(6 - report.targets.length);
    expect(report.notRun?.length).toBeGreaterThanOrEqual(2);
    expect(await kfarmContainers(docker)).toEqual([]);
  });
});
