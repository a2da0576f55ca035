import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConsole } from '../../src/verify/markers.js';
import { bootKernel, detectAccelerator, qemuArgs, type BootOptions } from '../../src/verify/qemu.js';

let dir: string;
/** Stands in for qemu-system-x86_64: prints a console, then behaves as told by its script. */
let fakeQemu: (body: string) => Promise<string>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kfarm-qemu-'));
  let n = 0;
  fakeQemu = async (body) => {
    const path = join(dir, `qemu-${n++}`);
    await writeFile(path, `#!/bin/sh\n${body}\n`);
    await chmod(path, 0o755);
    return path;
  };
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const base: BootOptions = { vmlinuz: '/boot/vmlinuz', initrd: '/tmp/initrd.cpio.gz', timeoutMs: 5000, accel: 'tcg' };

describe('accelerator', () => {
  it('honours KFARM_QEMU_ACCEL and rejects other values', async () => {
    expect(await detectAccelerator({ KFARM_QEMU_ACCEL: 'kvm' })).toBe('kvm');
    expect(await detectAccelerator({ KFARM_QEMU_ACCEL: 'tcg' })).toBe('tcg');
    await expect(detectAccelerator({ KFARM_QEMU_ACCEL: 'hvf' })).rejects.toThrow(
      'KFARM_QEMU_ACCEL=hvf: expected kvm or tcg',
    );
  });

  it('picks kvm or tcg from /dev/kvm and the CPU flags', async () => {
    expect(['kvm', 'tcg']).toContain(await detectAccelerator({}));
  });

  it('builds the command line: serial console on stdio, no devices, no reboot, host CPU only with KVM', () => {
    const args = qemuArgs(base);
    expect(args.join(' ')).toBe(
      '-accel tcg -m 512 -smp 1 -nodefaults -no-user-config -display none -serial stdio -no-reboot ' +
        '-kernel /boot/vmlinuz -initrd /tmp/initrd.cpio.gz -append console=ttyS0 panic=-1',
    );
    expect(qemuArgs({ ...base, accel: 'kvm', memoryMb: 1024 }).join(' ')).toMatch(/^-accel kvm -cpu host -m 1024 /);
  });
});

describe('bootKernel', () => {
  it('captures the console until QEMU exits', async () => {
    const qemu = await fakeQemu(
      `printf 'SeaBIOS\\r\\n\\033[2JKFARM: init 6.1.0-56-amd64\\r\\nKFARM: plan a\\r\\n` +
        `KFARM: loaded a package (OE)\\r\\nKFARM: done\\r\\n'`,
    );
    const outcome = await bootKernel({ ...base, qemu });
    expect(outcome).toMatchObject({
      exitCode: 0,
      timedOut: false,
      console: 'SeaBIOS\nKFARM: init 6.1.0-56-amd64\nKFARM: plan a\nKFARM: loaded a package (OE)\nKFARM: done\n',
    });
    expect(parseConsole(outcome.console, outcome).status).toBe('loaded');
  });

  it('kills a guest that outlives the time limit: timeout, with the console so far', async () => {
    const qemu = await fakeQemu(
      "echo '[    0.000000] Linux version 6.1.0-56-amd64'; echo 'KFARM: init 6.1.0-56-amd64'; " +
        "echo 'KFARM: insmod kf_hang package'; exec sleep 30",
    );
    const started = Date.now();
    const outcome = await bootKernel({ ...base, qemu, timeoutMs: 500 });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(outcome).toMatchObject({ timedOut: true, exitCode: undefined });
    expect(parseConsole(outcome.console, { ...outcome, timeoutMs: 500 })).toEqual({
      status: 'timeout',
      reason: 'no KFARM: done within 1 s, stuck in insmod kf_hang',
      loaded: [],
    });
  });

  it('stops QEMU when interrupted', async () => {
    const qemu = await fakeQemu('exec sleep 30');
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 200);
    await expect(bootKernel({ ...base, qemu, signal: controller.signal })).rejects.toMatchObject({
      code: 'KFARM_INTERRUPTED',
    });
  });

  it("keeps QEMU's own complaint, and names a missing QEMU", async () => {
    const qemu = await fakeQemu(`echo "qemu-system-x86_64: could not load kernel '/boot/vmlinuz'" >&2; exit 1`);
    const outcome = await bootKernel({ ...base, qemu });
    expect(parseConsole(outcome.console, outcome)).toMatchObject({
      status: 'boot-failed',
      reason: "QEMU: qemu-system-x86_64: could not load kernel '/boot/vmlinuz'",
    });
    await expect(bootKernel({ ...base, qemu: join(dir, 'missing') })).rejects.toThrow(
      `${join(dir, 'missing')}: not installed (install qemu-system-x86: scripts/setup-host.sh)`,
    );
  });
});
