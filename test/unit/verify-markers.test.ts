import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { kernelReason, parseConsole, stripTimestamp, type BootFacts } from '../../src/verify/markers.js';
import { cleanConsole } from '../../src/verify/qemu.js';

const recorded = (name: string) => readFile(new URL(`../fixtures/verify-console/${name}.log`, import.meta.url), 'utf8');
const exited: BootFacts = { timedOut: false, exitCode: 0 };

/** The boot part of a real console, for synthetic logs. */
const bootLines = [
  '[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)',
  '[    1.362363] Freeing unused kernel image memory: 2800K',
  '[    1.370000] Run /init as init process',
];

const log = (...lines: string[]) => [...bootLines, ...lines].join('\n');

describe('parseConsole on recorded consoles', () => {
  it('a module that loads and unloads: loaded, tainted (OE)', async () => {
    const verdict = parseConsole(await recorded('hello-bookworm'), exited);
    expect(verdict).toEqual({ status: 'loaded', loaded: [{ name: 'hello', source: 'package', taint: '(OE)' }] });
  });

  it('a module that needs kernel modules: they load first, in dependency order', async () => {
    const verdict = parseConsole(await recorded('kdep-trixie'), exited);
    expect(verdict.status).toBe('loaded');
    expect(verdict.loaded).toEqual([
      { name: 'mc', source: 'kernel', taint: '-' },
      { name: 'videodev', source: 'kernel', taint: '-' },
      { name: 'kf_kdep', source: 'package', taint: '(OE)' },
    ]);
  });

  it("an unknown symbol: load-failed with the kernel's own line", async () => {
    const verdict = parseConsole(await recorded('unknown-symbol-trixie'), exited);
    expect(verdict).toEqual({
      status: 'load-failed',
      reason: 'kf_unksym: Unknown symbol kfarm_missing_symbol (err -2)',
      loaded: [],
    });
  });

  it('a kernel panic before /init: boot-failed with the panic line', async () => {
    const verdict = parseConsole(await recorded('panic-no-root'), exited);
    expect(verdict).toEqual({
      status: 'boot-failed',
      reason: 'Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)',
      loaded: [],
    });
  });

  it('a recorded boot cut short by the time limit: timeout', async () => {
    const whole = await recorded('hello-bookworm');
    const cut = whole.slice(0, whole.indexOf('KFARM: init'));
    expect(parseConsole(cut, { timedOut: true, exitCode: undefined, timeoutMs: 120_000 })).toEqual({
      status: 'timeout',
      reason: 'no KFARM: done within 120 s, /init never ran',
      loaded: [],
    });
  });
});

describe('parseConsole on synthetic consoles', () => {
  it('timeout while a module is being loaded names it', () => {
    const text = log('KFARM: init 6.1.0-56-amd64', 'KFARM: plan kf_hang', 'KFARM: insmod kf_hang package');
    expect(parseConsole(text, { timedOut: true, exitCode: undefined, timeoutMs: 30_000 })).toMatchObject({
      status: 'timeout',
      reason: 'no KFARM: done within 30 s, stuck in insmod kf_hang',
    });
  });

  it('a symbol version mismatch', () => {
    const text = log(
      'KFARM: init 6.1.0-56-amd64',
      'KFARM: plan kf_x',
      'KFARM: insmod kf_x package',
      "insmod: can't insert '/lib/modules/kfarm/package/kf_x.ko': invalid parameter",
      'KFARM: kmsg kf_x',
      '[    2.1] kf_x: loading out-of-tree module taints kernel.',
      '[    2.2] kf_x: module verification failed: signature and/or required key missing - tainting kernel',
      '[    2.3] kf_x: disagrees about version of symbol module_layout',
      'KFARM: kmsg-end kf_x',
      'KFARM: load-failed kf_x 1',
      'KFARM: dmesg',
      'KFARM: done',
    );
    expect(parseConsole(text, exited)).toEqual({
      status: 'load-failed',
      reason: 'kf_x: disagrees about version of symbol module_layout',
      loaded: [],
    });
  });

  it('a signature rejection (lockdown / enforced signatures)', () => {
    const text = log(
      'KFARM: init 6.1.0-56-amd64',
      'KFARM: plan kf_x',
      'KFARM: insmod kf_x package',
      "insmod: can't insert '/lib/modules/kfarm/package/kf_x.ko': Key was rejected by service",
      'KFARM: kmsg kf_x',
      '[    2.1] Lockdown: insmod: unsigned module loading is restricted; see man kernel_lockdown.7',
      'KFARM: kmsg-end kf_x',
      'KFARM: load-failed kf_x 1',
      'KFARM: done',
    );
    expect(parseConsole(text, exited).reason).toBe(
      'Lockdown: insmod: unsigned module loading is restricted; see man kernel_lockdown.7',
    );
    expect(kernelReason('kf_x', ["insmod: can't insert 'kf_x.ko': Key was rejected by service"])).toBe(
      "insmod: can't insert 'kf_x.ko': Key was rejected by service",
    );
  });

  it("a module whose init fails: its own message, else insmod's", () => {
    const text = (kmsg: string[]) =>
      log(
        'KFARM: init x',
        'KFARM: plan kf_x',
        'KFARM: insmod kf_x package',
        "insmod: can't insert 'kf_x.ko': No such device",
        'KFARM: kmsg kf_x',
        ...kmsg,
        'KFARM: kmsg-end kf_x',
        'KFARM: load-failed kf_x 1',
        'KFARM: done',
      );
    expect(parseConsole(text(['[    2.2] kf_x: no hardware found']), exited).reason).toBe('kf_x: no hardware found');
    expect(parseConsole(text([]), exited).reason).toBe("insmod: can't insert 'kf_x.ko': No such device");
  });

  it('a failing dependency stops the loads and is the reason', () => {
    const text = log(
      'KFARM: init x',
      'KFARM: plan mc videodev kf_kdep',
      'KFARM: insmod mc kernel',
      'KFARM: kmsg mc',
      'KFARM: kmsg-end mc',
      'KFARM: loaded mc kernel -',
      'KFARM: insmod videodev kernel',
      'KFARM: kmsg videodev',
      '[    2.5] videodev: Unknown symbol media_entity_pads_init (err -2)',
      'KFARM: kmsg-end videodev',
      'KFARM: load-failed videodev 2',
      'KFARM: rmmod mc',
      'KFARM: unloaded mc',
      'KFARM: done',
    );
    expect(parseConsole(text, exited)).toEqual({
      status: 'load-failed',
      reason: 'videodev: Unknown symbol media_entity_pads_init (err -2)',
      loaded: [{ name: 'mc', source: 'kernel', taint: '-' }],
    });
  });

  it('a panic while loading is a load failure of that module', () => {
    const text = log(
      'KFARM: init x',
      'KFARM: plan kf_boom',
      'KFARM: insmod kf_boom package',
      '[    2.4] BUG: kernel NULL pointer dereference, address: 0000000000000000',
      '[    2.5] Kernel panic - not syncing: Fatal exception',
    );
    expect(parseConsole(text, exited)).toEqual({
      status: 'load-failed',
      reason: 'Kernel panic - not syncing: Fatal exception (while loading kf_boom)',
      loaded: [],
    });
  });

  it('an oops that kills insmod (the kernel survives) is the reason', () => {
    const text = log(
      'KFARM: init x',
      'KFARM: plan kf_oops',
      'KFARM: insmod kf_oops package',
      'Segmentation fault',
      'KFARM: kmsg kf_oops',
      '[    2.1] kf_oops: loading out-of-tree module taints kernel.',
      '[    2.4] BUG: kernel NULL pointer dereference, address: 0000000000000000',
      '[    2.4] #PF: supervisor read access in kernel mode',
      'KFARM: kmsg-end kf_oops',
      'KFARM: load-failed kf_oops 139',
      'KFARM: done',
    );
    expect(parseConsole(text, exited).reason).toBe('BUG: kernel NULL pointer dereference, address: 0000000000000000');
  });

  it('a crash while unloading is a load-test failure', () => {
    const text = log(
      'KFARM: init x',
      'KFARM: plan kf_x',
      'KFARM: insmod kf_x package',
      'KFARM: loaded kf_x package (OE)',
      'KFARM: rmmod kf_x',
      '[    3.0] general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI',
      '[    3.1] Kernel panic - not syncing: Fatal exception',
    );
    expect(parseConsole(text, exited)).toMatchObject({
      status: 'load-failed',
      reason: 'Kernel panic - not syncing: Fatal exception (while unloading kf_x)',
    });
  });

  it('all planned modules loaded but the tail of the console was lost: still loaded', () => {
    const text = log(
      'KFARM: init x',
      'KFARM: plan a b',
      'KFARM: insmod a package',
      'KFARM: loaded a package (OE)',
      'KFARM: insmod b package',
      'KFARM: loaded b package (OE)',
      'KFARM: rmmod b',
      'KFARM: unloaded b',
    );
    expect(parseConsole(text, exited).status).toBe('loaded');
    // …unless QEMU did not exit cleanly.
    expect(parseConsole(text, { timedOut: false, exitCode: 1 }).status).toBe('boot-failed');
  });

  it('QEMU that could not start the guest: its own message', () => {
    expect(
      parseConsole('', { timedOut: false, exitCode: 1, stderr: "qemu-system-x86_64: could not load kernel '/x'" }),
    ).toEqual({
      status: 'boot-failed',
      reason: "QEMU: qemu-system-x86_64: could not load kernel '/x'",
      loaded: [],
    });
    expect(parseConsole(log(), { timedOut: false, exitCode: 0 }).reason).toBe(
      'the kernel stopped before /init ran (QEMU exited 0; last console line: Run /init as init process)',
    );
  });

  it('finds markers even after other text on the line', () => {
    const text = log(
      '[    2.0] random: crng init done KFARM: init x',
      'KFARM: plan a',
      'KFARM: insmod a package',
      'KFARM: loaded a package (OE)',
      'KFARM: done',
    );
    expect(parseConsole(text, exited).status).toBe('loaded');
  });
});

describe('console clean-up', () => {
  it('drops carriage returns and terminal escapes, and kernel timestamps for reasons', () => {
    expect(cleanConsole('\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\nKFARM: init\r\n')).toBe('SeaBIOS\nKFARM: init\n');
    expect(stripTimestamp('[    2.584704] kf_unksym: Unknown symbol kfarm_missing_symbol (err -2)')).toBe(
      'kf_unksym: Unknown symbol kfarm_missing_symbol (err -2)',
    );
    expect(stripTimestamp('<4>[12345.000001] x: y')).toBe('x: y');
  });
});
