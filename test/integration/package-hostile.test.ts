import { createHash } from 'node:crypto';
import { cp, lstat, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { outputLimits } from '../../src/model/limits.js';
import { runFarm } from '../../src/farm/run.js';
import type { Target } from '../../src/model/result.js';
import { connectEngine, type Engine } from '../../src/engine/index.js';
import { newSession } from '../../src/engine/labels.js';
import { packageOutput } from '../../src/package/package.js';
import { releaseSources, resolveTargets } from '../../src/plan/resolve.js';
import { fixture, repoRoot, requireEngine, tempOut } from '../helpers/engine.js';

/**
 * test/fixtures/hostile builds a harmless module, then its POST_BUILD script (scripts/plant.sh) plants hostile
 * entries in the output kfarm collects from the build container (/kfarm/out). The variant is the first line
 * of the file `variant` in the source tree; each test copies the fixture and writes it.
 */

let docker: Docker;
let engine: Engine;
let bookworm: Target;

beforeAll(async () => {
  docker = await requireEngine();
  engine = await connectEngine(newSession(`package-hostile-${process.pid}`));
  const targets = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  bookworm = targets.find((t) => t.release === 'bookworm') as Target;
});

const made: string[] = [];
afterEach(async () => {
  for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function files(dir: string): Promise<{ path: string; type: string; size: number }[]> {
  const result: { path: string; type: string; size: number }[] = [];
  const walk = async (d: string, rel: string) => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      const info = await lstat(join(d, entry.name));
      result.push({
        path,
        type: entry.isDirectory() ? 'dir' : entry.isFile() ? 'file' : entry.isSymbolicLink() ? 'symlink' : 'other',
        size: info.size,
      });
      if (entry.isDirectory()) await walk(join(d, entry.name), path);
    }
  };
  await walk(dir, '');
  return result;
}

const sha256 = async (path: string) =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

async function buildVariant(variant: string) {
  const source = await tempOut('kfarm-hostile-src-');
  await cp(fixture('hostile'), source, { recursive: true });
  await writeFile(join(source, 'variant'), `${variant}\n`);
  const out = await tempOut('kfarm-hostile-out-');
  made.push(source, out);
  const tmpBefore = new Set(await readdir(tmpdir()));
  const passwd = await sha256('/etc/passwd');
  const started = Date.now();
  const { report } = await runFarm({ source, out, targets: [bookworm], sources: releaseSources, cache: false, engine });
  const ms = Date.now() - started;
  // Nothing appeared outside <out>: no new entry in the host's temp dir named like a payload, /etc/passwd as it was.
  const newInTmp = (await readdir(tmpdir())).filter(
    (n) => !tmpBefore.has(n) && /payload|passwd|pwned|x\.ko|big\.ko|kf_/.test(n),
  );
  expect(newInTmp).toEqual([]);
  expect(await sha256('/etc/passwd')).toBe(passwd);
  const result = report.targets[0];
  expect(result).toBeDefined();
  const list = await files(out);
  // Only regular files and directories, none of them a link, FIFO or oversized.
  for (const f of list) {
    expect(['file', 'dir'], `${f.path} is a ${f.type}`).toContain(f.type);
    expect(f.size, f.path).toBeLessThanOrEqual(outputLimits.logBytes);
  }
  const containers = await docker.listContainers({
    all: true,
    filters: { label: [`kfarm.session=${engine.session.id}`] },
  });
  expect(containers).toEqual([]);
  return { out, result: result as NonNullable<typeof result>, list, ms };
}

const rejected: [variant: string, reason: RegExp][] = [
  ['symlink-ko', /^build output rejected: "out\/module\/kf_payload\.ko" is a symbolic link, not a regular file$/],
  ['symlink-dir', /^build output rejected: "out\/module" is a symbolic link, not a directory$/],
  ['symlink-log', /^build output rejected: "out\/make\.log" is a symbolic link, not a regular file$/],
  ['symlink-out', /^build output rejected: "out" is a symbolic link, not a directory$/],
  ['fifo-ko', /^build output rejected: "out\/module\/x\.ko" is a FIFO, not a regular file$/],
  ['sparse-ko', /^build output rejected: "out\/module\/big\.ko" is 2147483648 bytes, over the 268435456-byte limit$/],
  // Two names of one file: whichever tar meets second is the hard link (directory order decides).
  ['hardlink-ko', /^build output rejected: "out\/module\/kf_(link|hostile)\.ko" is a hard link, not a regular file$/],
  ['extra-file', /^build output rejected: unexpected file "out\/module\/payload\.sh"$/],
];

describe('hostile build output (test/fixtures/hostile)', () => {
  for (const [variant, reason] of rejected) {
    it(
      `${variant}: the target fails with "build output rejected", nothing is written outside <out>, ` +
        'no planted entry reaches the tree',
      async () => {
        const { out, result, list, ms } = await buildVariant(variant);
        expect(result.status).toBe('failed');
        expect(result.error).toMatch(reason);
        expect(result.artifacts).toEqual([]);
        // Rejected at the first bad entry: no byte of a 2 GiB file is copied, so this is as fast as a plain build.
        expect(ms).toBeLessThan(60_000);
        // None of the planted names got in (the fixture's own kf_hostile.ko may: see the `fails` test below).
        expect(list.filter((f) => /kf_payload|x\.ko|big\.ko|kf_link|payload\.sh|passwd/.test(f.path))).toEqual([]);
        expect(list.filter((f) => f.path.endsWith('.ko')).map((f) => f.path.split('/').pop())).not.toContain(
          'kf_payload.ko',
        );
        // Nothing to package from it.
        const packaged = await packageOutput(out, JSON.parse(await readFile(join(out, 'report.json'), 'utf8')), {
          formats: ['dkms'],
          sourceDateEpoch: 1700000000,
        });
        expect(packaged.targets.map((t) => (t as { packages?: string[] }).packages)).toEqual([[]]);
        expect(await readdir(out)).not.toContain('packages');
      },
    );
  }

  // Entries collected before the bad one (here the fixture's own, honest kf_hostile.ko) must not reach the
  // DKMS tree of a target reported as failed.
  it('a rejected output leaves no module of the failed target in the DKMS tree', async () => {
    const { list } = await buildVariant('symlink-ko');
    expect(list.filter((f) => f.path.endsWith('.ko'))).toEqual([]);
  });

  it('sparse-log: a 2 GiB make.log is cut to its head and tail in the container, and the report says so', async () => {
    const started = Date.now();
    const { out, result } = await buildVariant('sparse-log');
    expect(result.status).toBe('built');
    const half = Math.floor((outputLimits.logBytes - 256) / 2);
    expect(result.logCutBytes).toBe(2 * 1024 ** 3 - 2 * half);
    const log = await readFile(join(out, result.log as string));
    expect(log.length).toBeLessThanOrEqual(outputLimits.logBytes);
    expect(log.subarray(0, 40).toString()).toMatch(/^applying|^Running|^DKMS make\.log/);
    expect(log.toString('latin1', half, half + 200)).toMatch(
      new RegExp(`^\\n\\[kfarm: make\\.log was 2147483648 bytes; ${2 * 1024 ** 3 - 2 * half} bytes cut here`),
    );
    // Cut where it is (tail seeks, truncate frees): no 2 GiB stream to the host.
    expect(Date.now() - started).toBeLessThan(60_000);
  });
});
