/**
 * bench/suite: the test suite as a fresh machine runs it: vitest against a private dockerd with no images
 * (every base, headers volume and tool image prepared by the run itself) and, as always under vitest, an
 * empty cache dir. Prints the wall time and the test counts (target ≤ 10 min).
 * The fidelity file (real `dkms build` of zfs and others, twice each) is left out unless `--fidelity` is given:
 * its real compiles alone take longer than the target.
 * Usage: bench/suite [--fidelity]   (root, after npm ci && npm run build)
 */
import { execa } from 'execa';
import { cpus } from 'node:os';
import { startSecondEngine } from '../test/helpers/second-engine.js';

const root = new URL('..', import.meta.url).pathname;
const withFidelity = process.argv.includes('--fidelity');
const exclude = withFidelity ? [] : ['--exclude', 'test/integration/fidelity.test.ts'];

const engine = await startSecondEngine({ name: 'benchsuite', storage: 'disk', timeoutMs: 120_000, network: true });
try {
  const t0 = performance.now();
  const run = await execa('npx', ['vitest', 'run', ...exclude], {
    cwd: root,
    reject: false,
    all: true,
    env: { DOCKER_HOST: engine.dockerHost, CI: 'true', NO_COLOR: '1' },
  });
  const wall = (performance.now() - t0) / 1000;
  // vitest's summary lines (`Test Files  43 passed (43)`, `Tests  420 passed (420)`); NO_COLOR keeps them plain.
  const plain = run.all ?? '';
  const summary = plain.split('\n').filter((line) => /^\s*(Test Files|Tests)\s/.test(line));
  console.log(
    `bench/suite: vitest${withFidelity ? '' : ' without the fidelity file'}, empty engine and cache dir, ${cpus().length} cores`,
  );
  for (const line of summary) console.log(`  ${line.trim()}`);
  console.log(`  exit ${run.exitCode}, wall ${(wall / 60).toFixed(1)} min   (target ≤ 10 min)`);
  if (run.exitCode !== 0)
    console.log(
      plain
        .split('\n')
        .filter((l) => /FAIL|×|Error/.test(l))
        .slice(0, 20)
        .join('\n'),
    );
} finally {
  await engine.stop();
}
