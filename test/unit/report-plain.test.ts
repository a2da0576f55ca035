import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { plainProgress } from '../../src/report/plain.js';

describe('plainProgress while images are prepared', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(0);
  });
  afterEach(() => vi.useRealTimers());

  it('says what a quiet preparation is still doing at least every 10 s, and stops when it is ready or failed', () => {
    const lines: string[] = [];
    const events = plainProgress((line) => lines.push(line), 0);
    events.onPrepare?.('kfarm/debian:bookworm', 'bootstrap debian/bookworm');
    vi.advanceTimersByTime(9_000);
    expect(lines).toEqual(['[00:00] preparing image kfarm/debian:bookworm (bootstrap debian/bookworm)']);
    vi.advanceTimersByTime(1_000);
    expect(lines.at(-1)).toBe('[00:10] image kfarm/debian:bookworm: bootstrap debian/bookworm (10 s so far)');
    vi.advanceTimersByTime(2_000);
    events.onProgress?.('kfarm/debian:bookworm', 'mmdebstrap: installing packages');
    vi.advanceTimersByTime(9_000);
    expect(lines.at(-1)).toBe('[00:12] image kfarm/debian:bookworm: mmdebstrap: installing packages');
    vi.advanceTimersByTime(1_000);
    expect(lines.at(-1)).toBe('[00:22] image kfarm/debian:bookworm: mmdebstrap: installing packages (22 s so far)');

    events.onPrepare?.('kfarm/debian:trixie', 'bootstrap debian/trixie');
    events.onReady?.('kfarm/debian:bookworm', 23_000, false);
    events.onFailed?.('kfarm/debian:trixie');
    const count = lines.length;
    vi.advanceTimersByTime(60_000);
    expect(lines).toHaveLength(count);
    expect(vi.getTimerCount()).toBe(0);
  });
});
