import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectEngine, newSession } from '../../src/engine/index.js';
import { baseRef, ImageStore } from '../../src/images/image-store.js';
import type { Target } from '../../src/model/result.js';
import { releaseSources, resolveTargets } from '../../src/plan/resolve.js';
import { cli, fixture, repoRoot, requireEngine, tempOut } from '../helpers/engine.js';
import { startSecondEngine, type SecondEngine } from '../helpers/second-engine.js';

// A second dockerd of the test's own, killed or frozen in the middle of a build: kfarm must stop the run,
// write a partial report, say in one line that the engine is gone, exit 3, and never hang.
let target: Target;
let images: string[];
let second: SecondEngine | undefined;

beforeAll(async () => {
  await requireEngine();
  const targets = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  target = targets.find((t) => t.release === 'bookworm') as Target;
  // The base image, prepared on the main engine (reused when there) and copied to the second one, which unpacks
  // the kernel's headers into volumes of its own (they are not images).
  const engine = await connectEngine(newSession(`engine-loss-${process.pid}`));
  const store = new ImageStore(engine, { logDir: await tempOut(), sources: releaseSources });
  await store.headers(target);
  await engine.settle(30_000);
  images = [baseRef(target.release)];
});

afterEach(async () => {
  await second?.stop();
  second = undefined;
});

/** A build of the slow fixture (its PRE_BUILD sleeps) on the second engine, resolved once it is building. */
async function buildOnSecondEngine(
  engine: SecondEngine,
  out: string,
): Promise<{ child: ResultPromise; stderr: () => string }> {
  const args = ['build', fixture('slow'), '--target', target.id, '--out', out, '--no-cache'];
  const child = execa('node', [cli, ...args], { reject: false, env: { CI: 'true', DOCKER_HOST: engine.dockerHost } });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const started = Date.now();
  while (!/building/.test(stderr)) {
    if (Date.now() - started > 120_000) throw new Error(`the build never started:\n${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { child, stderr: () => stderr };
}

async function expectPartialReport(out: string): Promise<void> {
  const report = JSON.parse(await readFile(join(out, 'report.json'), 'utf8')) as {
    partial: boolean;
    notRun?: string[];
  };
  expect(report.partial).toBe(true);
  expect(report.notRun).toEqual([target.id]);
  expect((await stat(join(out, 'summary.md'))).isFile()).toBe(true);
}

describe('losing the engine mid-run', () => {
  it('a killed engine stops the run: one line, exit 3, a partial report', async () => {
    second = await startSecondEngine();
    await second.loadImages(images);
    const out = join(await tempOut(), 'out');
    const { child, stderr } = await buildOnSecondEngine(second, out);
    const killed = Date.now();
    await second.kill();
    const run = await child;
    const text = stderr();
    expect(Date.now() - killed).toBeLessThan(30_000);
    expect(run.exitCode, text).toBe(3);
    const errors = text.split('\n').filter((l) => l.startsWith('kfarm:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(new RegExp(`^kfarm: cannot reach the container engine at ${second.dockerHost}`));
    await expectPartialReport(out);
  });

  it('a frozen engine stops the run within the heartbeat and cleanup bounds, and kfarm does not hang', async () => {
    second = await startSecondEngine();
    await second.loadImages(images);
    const out = join(await tempOut(), 'out');
    const { child, stderr } = await buildOnSecondEngine(second, out);
    const frozen = Date.now();
    await second.freeze();
    const run = await child;
    const text = stderr();
    // Heartbeat every 10 s, 30 s to answer, then at most 10 s for each cleanup call.
    expect(Date.now() - frozen).toBeLessThan(75_000);
    expect(run.exitCode, text).toBe(3);
    const errors = text.split('\n').filter((l) => l.startsWith('kfarm:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/did not answer|does not answer/);
    expect(text).toMatch(/warning: could not remove .* the next kfarm run removes them/);
    await expectPartialReport(out);
    await second.thaw();
  });
});
