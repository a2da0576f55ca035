import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { FarmReport } from '../../../src/model/report.js';
import type { Target } from '../../../src/model/result.js';
import { runKfarm, supportedTarget, tempOut } from '../../helpers/engine.js';

// Issue: `kfarm package` and `kfarm verify` trusted what a DKMS tree held: a .ko that is not a kernel module
// was packaged as it was, and verify followed a symlinked .ko. Both now refuse either, naming the file.
let target: Target;

beforeAll(async () => {
  target = await supportedTarget('bookworm');
});

const kfarm = (args: string[]) => runKfarm(args);

/** An output directory whose report says hello.ko built, with `plant` deciding what hello.ko really is. */
async function tamperedOut(plant: (ko: string) => Promise<void>): Promise<{ out: string; ko: string }> {
  const out = await tempOut();
  const rel = `dkms/hello/1.0/${target.kernel}/x86_64/module/hello.ko`;
  await mkdir(join(out, rel, '..'), { recursive: true });
  await plant(join(out, rel));
  const report: FarmReport = {
    schemaVersion: 1,
    module: 'hello',
    version: '1.0',
    startedAt: new Date(0).toISOString(),
    durationMs: 1,
    partial: false,
    counts: { built: 1, failed: 0, 'expected-failure': 0, skipped: 0, cached: 0, timeout: 0, oom: 0 },
    targets: [{ ...target, status: 'built', durationMs: 1, artifacts: [rel] }],
  };
  await writeFile(join(out, 'report.json'), JSON.stringify(report));
  return { out, ko: join(out, rel) };
}

const notElf = (ko: string) => writeFile(ko, '#!/bin/sh\necho pwned\n');
const linked = (ko: string) => symlink('/etc/passwd', ko);

describe('a tampered DKMS tree', () => {
  it('package refuses a .ko that is not a kernel module, and one that is a symlink', async () => {
    for (const [plant, reason] of [
      [notElf, 'not a kernel module \\(not an ELF file\\)'],
      [linked, 'cannot open it as a regular file \\(ELOOP\\)'],
    ] as const) {
      const { out, ko } = await tamperedOut(plant);
      const run = await kfarm(['package', out, '--format', 'dkms']);
      expect(run.exitCode, run.stderr).toBe(1);
      expect(run.stderr.trim()).toMatch(new RegExp(`^kfarm: ${ko}: ${reason}$`));
    }
  });

  it('verify refuses them alike, before booting anything', async () => {
    for (const [plant, reason] of [
      [notElf, 'not a kernel module \\(not an ELF file\\)'],
      [linked, 'cannot open it as a regular file \\(ELOOP\\)'],
    ] as const) {
      const { out, ko } = await tamperedOut(plant);
      const run = await kfarm(['verify', out]);
      expect(run.exitCode, run.stderr).toBe(1);
      expect(run.stderr.trim().split('\n').pop()).toMatch(new RegExp(`^kfarm: ${ko}: ${reason}$`));
      expect(run.stderr).not.toMatch(/booting/);
    }
  });
});
