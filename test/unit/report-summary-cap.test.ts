import { describe, expect, it } from 'vitest';
import { capSummary, renderSummary } from '../../src/report/markdown.js';
import { countStatuses, type FarmReport } from '../../src/model/report.js';
import type { TargetResult } from '../../src/model/result.js';

function report(n: number): FarmReport {
  const targets: TargetResult[] = Array.from({ length: n }, (_, i) => ({
    id: `debian/bookworm/6.1.0-${i}-amd64`,
    distro: 'debian',
    release: 'bookworm',
    kernel: `6.1.0-${i}-amd64`,
    arch: 'x86_64',
    status: i % 2 === 0 ? 'built' : 'failed',
    durationMs: 1000,
    artifacts: [],
    ...(i % 2 === 0 ? {} : { error: `make exited 2 because of reason number ${i % 7}` }),
  }));
  return {
    schemaVersion: 1,
    module: 'hello',
    version: '1.0',
    startedAt: new Date(0).toISOString(),
    durationMs: 1,
    partial: false,
    counts: countStatuses(targets),
    targets,
  };
}

describe('capSummary', () => {
  it('leaves a summary under the limit alone', () => {
    const text = renderSummary(report(20));
    expect(capSummary(text)).toBe(text);
  });

  it('cuts kernel rows first, keeps title, table head and failure groups, and says what it cut', () => {
    const text = renderSummary(report(400));
    const limit = Math.floor(Buffer.byteLength(text) / 2);
    const capped = capSummary(text, limit);
    expect(Buffer.byteLength(capped)).toBeLessThanOrEqual(limit);
    expect(capped.split('\n').slice(0, 4)).toEqual(text.split('\n').slice(0, 4));
    expect(capped).toMatch(/_\d+ more kernel row\(s\) not shown: a step summary holds at most 1 MiB; report\.json/);
    expect(capped).toContain('### Failures');
    expect(capped.match(/^- /gm)?.length).toBe(text.match(/^- /gm)?.length);
    // As many rows as fit: one more would not.
    const shown = capped.split('\n').filter((l) => l.startsWith('| debian/')).length;
    expect(shown).toBeGreaterThan(0);
    expect(shown).toBeLessThan(400);
  });

  it('a real 1 MiB overflow (20,000 kernels) stays under GitHub’s limit', () => {
    const capped = capSummary(renderSummary(report(20_000)));
    expect(Buffer.byteLength(capped)).toBeLessThanOrEqual(1024 * 1024);
    expect(capped).toMatch(/more kernel row\(s\) not shown/);
  });
});
