import { readFile } from 'node:fs/promises';
import { basename, isAbsolute, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readModinfo } from '../../src/dkms/modinfo.js';
import type { Target } from '../../src/model/result.js';
import { example, requireEngine, runKfarm, supportedTarget, tempOut } from '../helpers/engine.js';
import { realDkmsBuild } from '../helpers/real-dkms-build.js';

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

async function kfarmBuild(pkg: string, target: Target): Promise<KfarmOutcome> {
  const out = await tempOut();
  // --no-cache: the comparison is with a build kfarm makes now, not one an earlier run cached.
  const run = await runKfarm(['build', `debian:${pkg}`, '-t', target.id, '-o', out, '--no-cache']);
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

// v4l2loopback: plain Kbuild; iptables-netflow: ./configure in PRE_BUILD needing its Depends (pkgconf,
// libxtables-dev); broadcom-sta: a prebuilt binary blob linked per kernel, from non-free.
const packages = ['v4l2loopback-dkms', 'iptables-netflow-dkms', 'broadcom-sta-dkms'];

describe.each(packages)('%s: kfarm build debian:<pkg> agrees with the real dkms build', (pkg) => {
  it.each(['bookworm', 'trixie'])('on %s', async (release) => {
    const target = targets.get(release) as Target;
    const [real, kfarm] = await Promise.all([realDkmsBuild(release, target.kernel, pkg), kfarmBuild(pkg, target)]);
    expect(kfarm.status === 'built', `kfarm ${kfarm.status}, real dkms build exited ${real.code}:\n${real.log}`).toBe(
      real.code === 0,
    );
    expect(Object.fromEntries(kfarm.modules)).toEqual(Object.fromEntries(real.modules));
  });
});
