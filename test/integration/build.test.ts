import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { beforeAll, describe, expect, it } from 'vitest';
import { readModinfo, vermagicRelease } from '../../src/dkms/modinfo.js';
import { runFarm } from '../../src/farm/run.js';
import type { Target, TargetResult } from '../../src/model/result.js';
import { releaseSources, resolveTargets } from '../../src/plan/resolve.js';
import { example, fixture, kfarmContainers, repoRoot, requireEngine, tempOut } from '../helpers/engine.js';

let docker: Docker;
let bookworm: Target;
let trixie: Target;

beforeAll(async () => {
  docker = await requireEngine();
  const targets = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  bookworm = targets.find((t) => t.release === 'bookworm') as Target;
  trixie = targets.find((t) => t.release === 'trixie') as Target;
  expect(bookworm?.kernel).toMatch(/^6\.1\.0-\d+-amd64$/);
  expect(trixie?.kernel).toMatch(/^6\.12\.\d+\+deb13-amd64$/);
});

async function build(source: string, targets: Target[] = [bookworm, trixie]) {
  const out = await tempOut();
  const run = await runFarm({ source, out, targets, sources: releaseSources, cache: false });
  const byRelease = (release: string) => run.report.targets.find((t) => t.release === release) as TargetResult;
  return { out, report: run.report, byRelease };
}

/** Asserts a built target's modules exist in the DKMS tree with a vermagic naming exactly its kernel. */
async function expectModules(out: string, result: TargetResult, names: string[]) {
  expect(result.status, result.error).toBe('built');
  expect(
    result.artifacts
      .filter((a) => a.endsWith('.ko'))
      .map((a) => a.split('/').pop())
      .sort(),
  ).toEqual([...names].sort());
  const infos = new Map<string, Map<string, string[]>>();
  for (const artifact of result.artifacts.filter((a) => a.endsWith('.ko'))) {
    expect(artifact).toMatch(
      new RegExp(`^dkms/[^/]+/[^/]+/${result.kernel.replace(/[.+]/g, '\\$&')}/x86_64/module/[^/]+\\.ko$`),
    );
    const info = await readModinfo(join(out, artifact));
    expect(vermagicRelease(info)).toBe(result.kernel);
    infos.set(artifact.split('/').pop() as string, info);
  }
  expect(result.log && (await stat(join(out, result.log))).isFile()).toBe(true);
  return infos;
}

describe('kfarm build with a real engine and real Debian headers (bookworm gcc-12, trixie gcc-14)', () => {
  it('builds the shipped example for both releases with matching vermagic', async () => {
    const { out, report, byRelease } = await build(example('hello'));
    expect(report.module).toBe('hello');
    expect(report.version).toBe('1.0');
    await expectModules(out, byRelease('bookworm'), ['hello.ko']);
    await expectModules(out, byRelease('trixie'), ['hello.ko']);
    const written = JSON.parse(await readFile(join(out, 'report.json'), 'utf8'));
    expect(written).toEqual(report);
    expect(written.schemaVersion).toBe(1);
    expect(await kfarmContainers(docker)).toEqual([]);
  });

  it('builds for the oldest and the newest release too: bullseye (gcc 10, pahole in dwarves) and sid', async () => {
    // Each release's base is its own bootstrap: a package one release lacks, or a Release file whose Valid-Until
    // passed on a mirror that is behind, fails that release only here, so both ends of the range are built.
    const matrix = join(await tempOut(), 'ends.yaml');
    await writeFile(
      matrix,
      'distro: debian\nreleases:\n  bullseye:\n    kernels: latest\n  sid:\n    kernels: latest\n',
    );
    const targets = await resolveTargets({ matrix });
    expect(targets.map((t) => t.release)).toEqual(['bullseye', 'sid']);
    const { out, byRelease } = await build(example('hello'), targets);
    await expectModules(out, byRelease('bullseye'), ['hello.ko']);
    await expectModules(out, byRelease('sid'), ['hello.ko']);
    expect(await kfarmContainers(docker)).toEqual([]);
  });

  it('one warm builder serves three kernels of a release, each target from a fresh start', async () => {
    const matrix = join(await tempOut(), 'three.yaml');
    await writeFile(matrix, 'distro: debian\nreleases:\n  bookworm:\n    kernels: latest:3\n');
    const targets = await resolveTargets({ matrix });
    expect(targets).toHaveLength(3);
    // Their volumes filled first: a kernel whose headers are still being unpacked when the builder is made
    // gets a builder of its own (a lease waits 1.5 s for it, not longer), which is not what this test is about.
    await runFarm({ source: example('hello'), out: await tempOut(), targets, sources: releaseSources, cache: false });
    const events: string[] = [];
    const stream = await docker.getEvents({ filters: { type: ['container'], event: ['start'] } });
    stream.on('data', (chunk: Buffer) => events.push(chunk.toString()));
    const out = await tempOut();
    // The fixture fails when it finds what it leaves behind (files in /tmp, /root and the DKMS tree, a process).
    const run = await runFarm({
      source: fixture('leaver'),
      out,
      targets,
      sources: releaseSources,
      cache: false,
      jobs: 1,
    });
    (stream as unknown as { destroy: () => void }).destroy();
    for (const result of run.report.targets) {
      await expectModules(out, result, ['kf_leaver.ko']);
      expect(await readFile(join(out, result.log ?? ''), 'utf8')).toContain(`left traces for ${result.kernel}`);
    }
    // One builder: the first target made it, the others found it warm.
    const starts = run.report.targets.map((t) => t.phases?.start ?? -1);
    expect(
      starts.filter((ms) => ms > 0),
      JSON.stringify(starts),
    ).toHaveLength(1);
    expect(starts.filter((ms) => ms === 0)).toHaveLength(2);
    // Other test files build at the same time: only this process's builders count.
    const mine = events.filter((e) => e.includes('"kfarm.role":"build"') && e.includes(`"kfarm.pid":"${process.pid}"`));
    expect(mine).toHaveLength(1);
    expect(await kfarmContainers(docker)).toEqual([]);
  });

  it('builds the real-world-style package: $(cat VERSION), sourced kernel .config, custom MAKE, $kernelver paths', async () => {
    const { out, report, byRelease } = await build(example('realworld'));
    expect(report.version).toBe('2.3.1');
    for (const release of ['bookworm', 'trixie']) {
      const infos = await expectModules(out, byRelease(release), ['rwdemo.ko']);
      // CONFIG_X86_64 from the kernel's .config reached the make command only if dkms.conf sourced it in the container.
      expect(infos.get('rwdemo.ko')?.get('rwdemo_arch')).toEqual(['x86_64']);
      expect(byRelease(release).makeCommand).toContain(`KVER=${byRelease(release).kernel}`);
    }
  });

  it('single-file module with the default BUILT_MODULE_NAME', async () => {
    const { out, byRelease } = await build(fixture('single'), [bookworm]);
    await expectModules(out, byRelease('bookworm'), ['kf_single.ko']);
  });

  it('two modules in subdirectories: BUILT_MODULE_LOCATION and a DEST_MODULE_NAME rename', async () => {
    const { out, byRelease } = await build(fixture('twomods'));
    for (const release of ['bookworm', 'trixie']) {
      const infos = await expectModules(out, byRelease(release), ['kf_alpha.ko', 'kf_beta_renamed.ko']);
      expect(infos.get('kf_beta_renamed.ko')?.get('depends')).toEqual(['kf_alpha']);
    }
  });

  it('MAKE_MATCH picks a different make command per kernel', async () => {
    const { out, byRelease } = await build(fixture('makematch'));
    const old = await expectModules(out, byRelease('bookworm'), ['kf_mm.ko']);
    const recent = await expectModules(out, byRelease('trixie'), ['kf_mm.ko']);
    expect(old.get('kf_mm.ko')?.get('kf_flavor')).toEqual(['old']);
    expect(recent.get('kf_mm.ko')?.get('kf_flavor')).toEqual(['new']);
  });

  it('PATCH_MATCH applies a patch only on matching kernels; an unmatched PATCH everywhere', async () => {
    const { out, byRelease } = await build(fixture('patchmatch'));
    const old = (await expectModules(out, byRelease('bookworm'), ['kf_patch.ko'])).get('kf_patch.ko');
    const recent = (await expectModules(out, byRelease('trixie'), ['kf_patch.ko'])).get('kf_patch.ko');
    expect(old?.get('kf_patched')).toEqual(['no']);
    expect(recent?.get('kf_patched')).toEqual(['yes-6.12']);
    expect(old?.get('kf_always')).toEqual(['applied']);
    expect(recent?.get('kf_always')).toEqual(['applied']);
  });

  it('BUILD_EXCLUSIVE_KERNEL skips a kernel (skipped, not failed) and builds the other', async () => {
    const { out, byRelease } = await build(fixture('exclusive'));
    expect(byRelease('bookworm').status).toBe('skipped');
    expect(byRelease('bookworm').error).toMatch(/BUILD_EXCLUSIVE_KERNEL/);
    expect(byRelease('bookworm').artifacts).toEqual([]);
    await expectModules(out, byRelease('trixie'), ['kf_excl.ko']);
  });

  it('a compile error fails the target, keeps make.log and names the reason', async () => {
    const { out, byRelease } = await build(fixture('broken'), [bookworm]);
    const result = byRelease('bookworm');
    expect(result.status).toBe('failed');
    expect(result.error).toMatch(/make exited 2/);
    expect(result.artifacts).toEqual([]);
    const log = await readFile(join(out, result.log as string), 'utf8');
    expect(log).toMatch(/kf_broken\.c:7:\d+: error: 'this_symbol_does_not_exist' undeclared/);
    expect(await kfarmContainers(docker)).toEqual([]);
  });

  it('PRE_BUILD and POST_BUILD run around make with their output in make.log; STRIP=no keeps debug info', async () => {
    const { out, byRelease } = await build(fixture('prepost'), [bookworm]);
    await expectModules(out, byRelease('bookworm'), ['kf_prepost.ko']);
    const log = await readFile(join(out, byRelease('bookworm').log as string), 'utf8');
    expect(log.indexOf('pre-build ran')).toBeGreaterThanOrEqual(0);
    expect(log.indexOf('post-build ran')).toBeGreaterThan(log.indexOf('pre-build ran'));
    const ko = await readFile(join(out, byRelease('bookworm').artifacts[0] as string));
    expect(ko.includes(Buffer.from('.debug_info'))).toBe(true);
  });

  it('a dkms.conf with CRLF line endings', async () => {
    const { out, byRelease } = await build(fixture('crlf'), [bookworm]);
    await expectModules(out, byRelease('bookworm'), ['kf_crlf.ko']);
  });
});
