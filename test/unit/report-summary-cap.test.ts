import { describe, expect, it } from 'vitest';
import { capSummary, renderSummary } from '../../src/report/markdown.js';
import type { FarmReport } from '../../src/model/report.js';
import { report, result } from './report-fixtures.js';

/** n bookworm kernels, every other one failing on one of seven errors. */
function manyKernels(n: number): FarmReport {
  const targets = Array.from({ length: n }, (_, i) =>
    i % 2 === 0
      ? result('bookworm', `6.1.0-${i}-amd64`, 'built')
      : result('bookworm', `6.1.0-${i}-amd64`, 'failed', { error: `make exited 2 because of reason number ${i % 7}` }),
  );
  return report(targets);
}

describe('capSummary', () => {
  it('leaves a summary under the limit alone', () => {
    const text = renderSummary(manyKernels(20));
    expect(capSummary(text)).toBe(text);
  });

  it('cuts kernel rows first, keeps title, table head and failure groups, and says what it cut', () => {
    const text = renderSummary(manyKernels(400));
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
    const capped = capSummary(renderSummary(manyKernels(20_000)));
    expect(Buffer.byteLength(capped)).toBeLessThanOrEqual(1024 * 1024);
    expect(capped).toMatch(/more kernel row\(s\) not shown/);
  });
});
