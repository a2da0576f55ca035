import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Target } from '../../src/model/result.js';
import { stripAnsi } from '../../src/dkms/compiler-errors.js';
import { createProgress, TtyProgress } from '../../src/report/tty.js';
import { kernels, result } from './report-fixtures.js';

function fakeStream(rows = 24, columns = 120, isTTY = true) {
  const writes: string[] = [];
  const stream = {
    isTTY,
    rows,
    columns,
    write(chunk: string) {
      writes.push(chunk);
      return true;
    },
  };
  return { stream: stream as unknown as NodeJS.WriteStream, writes };
}

function fakeClock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const target = (kernel: string, release = 'trixie'): Target =>
  ({
    id: `debian/${release}/${kernel}`,
    distro: 'debian',
    release,
    kernel,
    arch: 'x86_64',
    flavour: 'amd64',
  }) as unknown as Target;

describe('TtyProgress', () => {
  let view: TtyProgress | undefined;
  afterEach(() => {
    view?.stop();
    vi.useRealTimers();
  });

  it('shows running builds with phase and elapsed time, finished ones, and a footer with counts and ETA', () => {
    const clock = fakeClock();
    const { stream } = fakeStream();
    view = new TtyProgress({ stream, total: 5, concurrency: 2, now: clock.now, color: false });
    const ts = kernels(5).map((k) => target(k));
    for (const t of ts) view.onTargetStart(t);
    for (const t of ts) view.onTargetPhase(t, 'image');
    view.onPrepare('kfarm/debian-trixie:6.12.94+deb13-amd64', 'headers');
    clock.advance(3_000);
    view.onReady('kfarm/debian-trixie:6.12.94+deb13-amd64', 3000, false);
    view.onTargetPhase(ts[0]!, 'start');
    view.onTargetPhase(ts[1]!, 'start');
    clock.advance(2_000);
    view.onTargetPhase(ts[0]!, 'build');
    clock.advance(8_000);
    view.onTargetDone(result('trixie', kernels(5)[0]!, 'built', { durationMs: 20_000 }));
    view.onTargetDone(
      result('trixie', kernels(5)[1]!, 'failed', {
        durationMs: 10_000,
        firstError: { file: 'kf.c', line: 7, column: 19, message: "'x' undeclared" },
      }),
    );
    view.onTargetPhase(ts[2]!, 'start');
    clock.advance(1_500);
    view.onTargetPhase(ts[2]!, 'evaluate');

    expect(view.frame()).toEqual([
      '  ✓ debian/trixie/6.12.90+deb13-amd64  built 20s',
      "  ✗ debian/trixie/6.12.91+deb13-amd64  failed 10s  kf.c:7:19: 'x' undeclared",
      '  ▸ debian/trixie/6.12.92+deb13-amd64  evaluate 1s',
      // mean of finished builds 15 s × 3 remaining / 2 at a time = 22.5 s
      '[2/5] 1 built, 1 failed, 0 skipped · 00:15 · ETA 00:23 · 1 running · 2 waiting',
    ]);
  });

  it('shows images being prepared and ETA --:-- before any build finished', () => {
    const clock = fakeClock();
    const { stream } = fakeStream();
    view = new TtyProgress({ stream, total: 2, concurrency: 4, now: clock.now, color: false });
    view.onTargetStart(target('6.1.0-56-amd64', 'bookworm'));
    view.onPrepare('kfarm/debian:bookworm', 'base image');
    clock.advance(42_000);
    expect(view.frame()).toEqual([
      '  ◌ preparing image kfarm/debian:bookworm (base image) 42s',
      '[0/2] 0 built, 0 failed, 0 skipped · 00:42 · ETA --:-- · 2 waiting',
    ]);
  });

  it('clips the frame to the terminal height and lines to its width', () => {
    const clock = fakeClock();
    const { stream } = fakeStream(8, 60);
    view = new TtyProgress({ stream, total: 100, concurrency: 100, now: clock.now, color: true });
    const ks = kernels(100);
    for (const k of ks) view.onTargetStart(target(k));
    for (const k of ks.slice(0, 40)) view.onTargetPhase(target(k), 'build');
    view.onTargetDone(
      result('trixie', ks[50]!, 'skipped', {
        error: 'BUILD_EXCLUSIVE_KERNEL does not match this very long kernel release string',
      }),
    );
    const frame = view.frame();
    expect(frame).toHaveLength(7); // rows - 1: the terminal never scrolls
    const plain = frame.map(stripAnsi);
    expect(plain.slice(0, 5)).toEqual([
      '  ▸ debian/trixie/6.12.90+deb13-amd64  build 0s',
      '  ▸ debian/trixie/6.12.91+deb13-amd64  build 0s',
      '  ▸ debian/trixie/6.12.92+deb13-amd64  build 0s',
      '  ▸ debian/trixie/6.12.93+deb13-amd64  build 0s',
      '  ▸ debian/trixie/6.12.94+deb13-amd64  build 0s',
    ]);
    expect(plain[5]).toBe('  … and 35 more running');
    expect(plain[6]).toBe('[1/100] 0 built, 0 failed, 1 skipped · 00:00 · ETA --:-- ·…');
    expect(view.footer()).toBe('[1/100] 0 built, 0 failed, 1 skipped · 00:00 · ETA --:-- · 40 running · 59 waiting');
    for (const line of plain) expect([...line].length).toBeLessThanOrEqual(59);
    expect(plain[6]!.endsWith('…')).toBe(true);
    expect(frame[0]).toContain('\x1b[1m');
  });

  it('redraws in place (cursor up + erase) at most every 100 ms, only when the frame changed, and stop() draws the last frame', () => {
    vi.useFakeTimers();
    const clock = fakeClock();
    const { stream, writes } = fakeStream();
    view = new TtyProgress({ stream, total: 1, concurrency: 1, now: clock.now, color: false });
    const t = target('6.12.94+deb13-amd64');
    view.onTargetStart(t);
    view.onTargetPhase(t, 'build');
    expect(writes).toHaveLength(0); // events never draw synchronously
    vi.advanceTimersByTime(100);
    expect(writes).toHaveLength(1);
    expect(writes[0]).toBe(
      '  ▸ debian/trixie/6.12.94+deb13-amd64  build 0s\x1b[K\n[0/1] 0 built, 0 failed, 0 skipped · 00:00 · ETA --:-- · 1 running\x1b[K\n',
    );
    vi.advanceTimersByTime(500);
    expect(writes).toHaveLength(1); // nothing changed
    clock.advance(1_000);
    vi.advanceTimersByTime(100);
    expect(writes).toHaveLength(2);
    expect(writes[1]!.startsWith('\x1b[2A\r\x1b[J  ▸ debian/trixie/6.12.94+deb13-amd64  build 1s')).toBe(true);
    view.onTargetDone(result('trixie', '6.12.94+deb13-amd64', 'built', { durationMs: 1000 }));
    view.stop();
    expect(writes).toHaveLength(3);
    expect(writes[2]).toBe(
      '\x1b[2A\r\x1b[J  ✓ debian/trixie/6.12.94+deb13-amd64  built 1s\x1b[K\n[1/1] 1 built, 0 failed, 0 skipped · 00:01\x1b[K\n',
    );
    view.stop();
    vi.advanceTimersByTime(1000);
    expect(writes).toHaveLength(3);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('createProgress', () => {
  it('TTY view on a terminal outside CI, timestamped lines otherwise', () => {
    const tty = fakeStream();
    const live = createProgress(tty.stream, { total: 1, concurrency: 1, env: {} });
    expect(live).toBeInstanceOf(TtyProgress);
    live.stop();

    const ci = createProgress(tty.stream, { total: 1, concurrency: 1, env: { CI: 'true' } });
    expect(ci).not.toBeInstanceOf(TtyProgress);
    const pipe = fakeStream(24, 80, false);
    const plain = createProgress(pipe.stream, { total: 1, concurrency: 1, env: {} });
    expect(plain).not.toBeInstanceOf(TtyProgress);
    plain.events.onTargetStart?.(target('6.12.94+deb13-amd64'));
    plain.stop();
    expect(pipe.writes).toEqual(['[00:00] debian/trixie/6.12.94+deb13-amd64: queued\n']);
  });
});

describe('TtyProgress.log', () => {
  it('prints a lasting line above the frame and redraws the frame under it', () => {
    const clock = fakeClock();
    const { stream, writes } = fakeStream();
    const view = new TtyProgress({ stream, total: 1, concurrency: 1, now: clock.now, color: false });
    view.redraw();
    expect(writes).toEqual(['[0/1] 0 built, 0 failed, 0 skipped · 00:00 · ETA --:-- · 1 waiting\x1b[K\n']);
    view.log('kfarm: warning: something');
    expect(writes.slice(1)).toEqual([
      '\x1b[1A\r\x1b[Jkfarm: warning: something\n',
      '[0/1] 0 built, 0 failed, 0 skipped · 00:00 · ETA --:-- · 1 waiting\x1b[K\n',
    ]);
    view.stop();
    view.log('after');
    expect(writes.at(-1)).toBe('after\n');
  });
});
