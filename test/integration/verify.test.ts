import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { verifyCommand } from '../../src/cli/verify-command.js';
import { runFarm } from '../../src/farm/run.js';
import type { Target, TargetResult, VerifyResult } from '../../src/model/result.js';
import { releaseSources, resolveTargets } from '../../src/plan/resolve.js';
import type { FarmReport } from '../../src/model/report.js';
import { verifyTargets } from '../../src/verify/index.js';
import { example, fixture, repoRoot, requireEngine, tempOut } from '../helpers/engine.js';

/**
 * Real builds for the default kernels, then real boots of Debian's own kernel packages under QEMU (TCG here:
 * no usable KVM), two at a time. The first run downloads each kernel's linux-image package (~70-110 MB).
 */
let docker: Docker;
let targets: Target[];
const outs: string[] = [];
const newOut = async (prefix: string) => {
  const out = await tempOut(prefix);
  outs.push(out);
  return out;
};

afterAll(async () => {
  await Promise.all(outs.map((out) => rm(out, { recursive: true, force: true })));
});

beforeAll(async () => {
  docker = await requireEngine();
  targets = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  expect(targets.map((t) => t.release)).toEqual(['bookworm', 'trixie']);
});

afterEach(async () => {
  vi.restoreAllMocks();
  // Only this process's containers: other kfarm runs may share the engine.
  const mine = await docker.listContainers({ all: true, filters: { label: [`kfarm.pid=${process.pid}`] } });
  expect(mine.map((c) => c.Id)).toEqual([]);
});

async function buildAndVerify(
  source: string,
  options: { params?: string; timeoutMs?: number; only?: 'bookworm' } = {},
) {
  const out = await newOut('kfarm-verify-it-');
  const chosen = options.only ? targets.filter((t) => t.release === options.only) : targets;
  const { report } = await runFarm({ source, out, targets: chosen, sources: releaseSources });
  for (const t of report.targets) expect(['built', 'cached'], `${t.id}: ${t.error}`).toContain(t.status);
  const results = await verifyTargets(out, report, { jobs: 2, ...options });
  const byRelease = (release: string) => {
    const target = report.targets.find((t) => t.release === release) as TargetResult;
    return { target, result: results.get(target.id) as VerifyResult };
  };
  const console = async (release: string) => readFile(join(out, byRelease(release).result.log as string), 'utf8');
  return { out, report, results, byRelease, console };
}

/** The KFARM lines of a console log, in order. */
const markers = (log: string) => log.split('\n').filter((l) => l.startsWith('KFARM: '));

describe('kfarm verify: load tests on the real Debian kernels under QEMU', () => {
  it('examples/hello loads and unloads on bookworm and trixie', async () => {
    const { results, byRelease, console } = await buildAndVerify(example('hello'), { params: 'whom=kfarm' });
    expect(results.size).toBe(2);
    for (const release of ['bookworm', 'trixie']) {
      const { target, result } = byRelease(release);
      expect(result.status, result.reason).toBe('loaded');
      expect(result.log).toBe(`dkms/hello/1.0/${target.kernel}/x86_64/log/verify.log`);
      expect(result.durationMs).toBeGreaterThan(0);
      const log = await console(release);
      expect(log).toContain(`KFARM: init ${target.kernel}`);
      expect(markers(log)).toEqual(
        expect.arrayContaining([
          'KFARM: plan hello',
          'KFARM: insmod hello package',
          'KFARM: loaded hello package (OE)',
          'KFARM: unloaded hello',
          'KFARM: done',
        ]),
      );
      // --verify-params reached the module.
      expect(log).toMatch(/\] hello: hello, kfarm$/m);
      expect(log).toMatch(/^kernel: linux-image-\S+ \S+ \((bookworm|trixie)(-security|-updates)?\) http/m);
    }
  });

  it('a module calling a symbol no kernel exports builds, then fails to load with the kernel\'s "Unknown symbol" line', async () => {
    const { out, byRelease, console } = await buildAndVerify(fixture('verify-unknown-symbol'));
    for (const release of ['bookworm', 'trixie']) {
      const { target, result } = byRelease(release);
      expect(target.artifacts).toContain(`dkms/kf_unksym/1.0/${target.kernel}/x86_64/module/kf_unksym.ko`);
      expect(result).toMatchObject({
        status: 'load-failed',
        reason: 'kf_unksym: Unknown symbol kfarm_missing_symbol (err -2)',
      });
      expect(markers(await console(release))).toContain('KFARM: load-failed kf_unksym 2');
    }
    // The build's own log shows modpost only warned.
    const makeLog = await readFile(join(out, byRelease('bookworm').target.log as string), 'utf8');
    expect(makeLog).toMatch(/WARNING: modpost: "kfarm_missing_symbol" \[.*kf_unksym\.ko\] undefined!/);
  });

  it("a module using a kernel module's export gets that module (and its own dependency) loaded first", async () => {
    const { byRelease, console } = await buildAndVerify(fixture('verify-kdep'));
    for (const release of ['bookworm', 'trixie']) {
      expect(byRelease(release).result.status, byRelease(release).result.reason).toBe('loaded');
      const loaded = markers(await console(release)).filter((l) => l.startsWith('KFARM: loaded '));
      expect(loaded).toEqual([
        'KFARM: loaded mc kernel -',
        'KFARM: loaded videodev kernel -',
        'KFARM: loaded kf_kdep package (OE)',
      ]);
      expect(await console(release)).toMatch(/kf_kdep: loaded, videodev answered/);
    }
  });

  it('two modules of one package load in dependency order; the renamed file keeps its modinfo name', async () => {
    const { byRelease, console } = await buildAndVerify(fixture('twomods'));
    for (const release of ['bookworm', 'trixie']) {
      expect(byRelease(release).result.status, byRelease(release).result.reason).toBe('loaded');
      const log = await console(release);
      expect(markers(log)).toEqual(
        expect.arrayContaining([
          'KFARM: plan kf_alpha kf_beta',
          'KFARM: loaded kf_alpha package (OE)',
          'KFARM: loaded kf_beta package (OE)',
        ]),
      );
      const order = markers(log).filter((l) => /^KFARM: (loaded|unloaded) /.test(l));
      expect(order).toEqual([
        'KFARM: loaded kf_alpha package (OE)',
        'KFARM: loaded kf_beta package (OE)',
        'KFARM: unloaded kf_beta',
        'KFARM: unloaded kf_alpha',
      ]);
      expect(log).toMatch(/^modules: kf_alpha \(kf_alpha\.ko\), kf_beta \(kf_beta_renamed\.ko\)$/m);
      expect(log).toMatch(/kf_beta: loaded, kf_alpha says 42/);
    }
  });

  it('a boot over the time limit is killed and reported as timeout', async () => {
    const { byRelease, console } = await buildAndVerify(example('hello'), { only: 'bookworm', timeoutMs: 1000 });
    const { result } = byRelease('bookworm');
    expect(result.status).toBe('timeout');
    expect(result.reason).toMatch(/^no KFARM: done within 1 s/);
    expect(await console('bookworm')).toMatch(/killed at the time limit/);
  });
});

describe('kfarm verify (CLI command)', () => {
  async function run(args: string[]): Promise<{ code: number; stdout: string }> {
    let code = -1;
    let stdout = '';
    vi.spyOn(process.stdout, 'write').mockImplementation(
      (chunk: string | Uint8Array) => ((stdout += String(chunk)), true),
    );
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await verifyCommand(new AbortController().signal, (c) => (code = c))
      .exitOverride()
      .parseAsync(args, { from: 'user' });
    return { code, stdout };
  }

  it('verifies a build output, records the results in report.json and exits 0 when everything loaded', async () => {
    const out = await newOut('kfarm-verify-cli-');
    await runFarm({
      source: example('hello'),
      out,
      targets: targets.filter((t) => t.release === 'trixie'),
      sources: releaseSources,
    });
    const { code, stdout } = await run([out, '--jobs', '1', '--verify-params', 'whom=cli']);
    expect(code).toBe(0);
    expect(stdout).toMatch(
      new RegExp(
        `debian/trixie/\\S+: loaded in \\d+\\.\\d s\\n    ${out}/dkms/hello/1\\.0/\\S+/x86_64/log/verify\\.log`,
      ),
    );
    const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as FarmReport;
    expect(report.targets[0]?.verify).toMatchObject({
      status: 'loaded',
      log: expect.stringMatching(/log\/verify\.log$/),
    });
  });

  it('exits 1 when a module does not load, and prints the reason', async () => {
    const out = await newOut('kfarm-verify-cli-');
    await runFarm({
      source: fixture('verify-unknown-symbol'),
      out,
      targets: targets.filter((t) => t.release === 'bookworm'),
      sources: releaseSources,
    });
    const { code, stdout } = await run([out, '--json']);
    expect(code).toBe(1);
    const report = JSON.parse(stdout) as FarmReport;
    expect(report.targets[0]?.verify).toMatchObject({
      status: 'load-failed',
      reason: 'kf_unksym: Unknown symbol kfarm_missing_symbol (err -2)',
    });
  });

  it('usage errors name the file or flag', async () => {
    const out = await newOut('kfarm-verify-cli-');
    await expect(run([out])).rejects.toMatchObject({
      code: 'KFARM_USAGE',
      message: `${join(out, 'report.json')}: not found (run \`kfarm build --out\` into this directory first)`,
    });
    await runFarm({
      source: example('hello'),
      out,
      targets: targets.filter((t) => t.release === 'bookworm'),
      sources: releaseSources,
    });
    await expect(run([out, '--target', 'debian/bookworm/6.1.0-1-amd64'])).rejects.toMatchObject({
      code: 'KFARM_TARGET_UNKNOWN',
      message: expect.stringMatching(/^--target debian\/bookworm\/6\.1\.0-1-amd64: not in the report/),
    });
    await expect(run([out, '--verify-params', 'nosuch.x=1'])).rejects.toMatchObject({
      code: 'KFARM_USAGE',
      message: '--verify-params: "nosuch.x=1": no module nosuch among the package\'s modules (hello)',
    });
    await expect(run([out, '--verify-params', 'a="b'])).rejects.toMatchObject({ code: 'commander.invalidArgument' });
  });
});
