import { readFile } from 'node:fs/promises';
import { basename, isAbsolute, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readModinfo } from '../../src/dkms/modinfo.js';
import type { Target } from '../../src/model/result.js';
import { example, fixture, requireEngine, runKfarm, supportedTarget, tempOut } from '../helpers/engine.js';
import { realDkmsBuild, type StandIn } from '../helpers/real-dkms-build.js';

/**
 * Fidelity against the real thing: for real Debian `*-dkms` packages, on the default matrix's bookworm and
 * trixie kernels, `kfarm build debian:<pkg>` has the outcome of the release's own `dkms build` (apt-installed
 * package, its Depends and the kernel's headers in a container of that release), and built modules have the same
 * names and vermagic.
 */
const targets = new Map<string, Target>();

beforeAll(async () => {
  await requireEngine();
  for (const release of ['bookworm', 'trixie']) targets.set(release, await supportedTarget(release));
  // The real builds run in kfarm's base images (no registry here): have kfarm prepare them first.
  const ids = [...targets.values()].flatMap((t) => ['-t', t.id]);
  const warm = await runKfarm(['build', example('hello'), ...ids, '-o', await tempOut()]);
  expect(warm.exitCode, warm.stderr).toBe(0);
});

interface KfarmOutcome {
  status: string;
  modules: Map<string, string>;
}

async function kfarmBuild(pkg: string, target: Target, withModules: string[]): Promise<KfarmOutcome> {
  const out = await tempOut();
  const withModule = withModules.flatMap((m) => ['--with-module', m]);
  // --no-cache: the comparison is with a build kfarm makes now, not one an earlier run cached.
  const run = await runKfarm(['build', `debian:${pkg}`, '-t', target.id, '-o', out, '--no-cache', ...withModule]);
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
    targets: Array<{ status: string; artifacts: string[] }>;
  };
  const [result] = report.targets;
  if (!result) throw new Error(`kfarm build debian:${pkg}: no target in report.json (exit ${run.exitCode})`);
  const modules = new Map<string, string>();
  for (const ko of result.artifacts.filter((a) => a.endsWith('.ko'))) {
    const vermagic = (await readModinfo(isAbsolute(ko) ? ko : join(out, ko))).get('vermagic')?.[0] ?? '';
    modules.set(basename(ko, '.ko'), vermagic);
  }
  return { status: result.status, modules };
}

interface Case {
  pkg: string;
  releases: string[];
  /** For a BUILD_DEPENDS module too large to build here: a fixture both sides install first. */
  standIn?: StandIn;
  /**
   * What the package's Depends on other `*-dkms` packages install on a real machine (apt installs and dkms
   * builds them first), given to kfarm as --with-module, per release.
   */
  withModules?: Record<string, string[]>;
}

const both = ['bookworm', 'trixie'];
const cases: Case[] = [
  // Plain Kbuild.
  { pkg: 'v4l2loopback-dkms', releases: both },
  // ./configure in PRE_BUILD, needing its Depends (pkgconf, libxtables-dev).
  { pkg: 'iptables-netflow-dkms', releases: both },
  // A prebuilt binary blob linked per kernel, from non-free.
  { pkg: 'broadcom-sta-dkms', releases: both },
  // Netfilter extensions whose Depends (xtables-addons-common) are build dependencies. Bookworm's west-chamber
  // depends on xtables-addons-dkms and builds with its source (`find /usr/src -name 'xtables-addons-*'`).
  { pkg: 'xtables-addons-dkms', releases: both },
  { pkg: 'west-chamber-dkms', releases: both, withModules: { bookworm: ['debian:xtables-addons-dkms'] } },
  // PACKAGE_VERSION="#MODULES_VERSION#", a placeholder: dkms builds the version its /usr/src directory names.
  // Bookworm has no mstflint-dkms.
  { pkg: 'mstflint-dkms', releases: ['trixie'] },
  // BUILD_DEPENDS="nvidia-current": the nvidia-current fixture (same name, module and nvidia_p2p_* exports as
  // nvidia-kernel-dkms, whose real build takes most of an hour here) dkms-installed on the real side, given with
  // --with-module to kfarm.
  {
    pkg: 'nvidia-fs-dkms',
    releases: both,
    standIn: { dir: fixture('nvidia-current'), provides: 'nvidia-kernel-dkms-any' },
  },
];

async function expectAgreement(pkg: string, release: string, standIn?: StandIn, withModules: string[] = []) {
  const target = targets.get(release) as Target;
  const [real, kfarm] = await Promise.all([
    realDkmsBuild(release, target.kernel, pkg, standIn),
    kfarmBuild(pkg, target, [...(standIn ? [standIn.dir] : []), ...withModules]),
  ]);
  expect(kfarm.status === 'built', `kfarm ${kfarm.status}, real dkms build exited ${real.code}:\n${real.log}`).toBe(
    real.code === 0,
  );
  expect(Object.fromEntries(kfarm.modules)).toEqual(Object.fromEntries(real.modules));
}

describe.each(cases)('$pkg: kfarm build debian:<pkg> agrees with the real dkms build', (c) => {
  it.each(c.releases)('on %s', (release) => expectAgreement(c.pkg, release, c.standIn, c.withModules?.[release]));
});

// zfs: the multi-line PRE_BUILD configure (DKMS's reading of values); ~10 min a build here, so one kernel.
describe('zfs-dkms: kfarm build debian:zfs-dkms agrees with the real dkms build', () => {
  it('on trixie', () => expectAgreement('zfs-dkms', 'trixie'), 45 * 60_000);
});
