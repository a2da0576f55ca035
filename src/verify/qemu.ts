import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { KfarmError } from '../model/errors.js';

export type Accelerator = 'kvm' | 'tcg';

export const QEMU = 'qemu-system-x86_64';

/**
 * KVM when it can work: `/dev/kvm` is readable and writable by us and the CPU advertises VMX or SVM (a
 * `/dev/kvm` without them — seen in nested sandboxes — opens fine but hangs the guest). Otherwise TCG, QEMU's
 * emulator: slower, but the same kernel runs the same way. `KFARM_QEMU_ACCEL=kvm|tcg` overrides.
 */
export async function detectAccelerator(env: NodeJS.ProcessEnv = process.env): Promise<Accelerator> {
  const forced = env['KFARM_QEMU_ACCEL'];
  if (forced === 'kvm' || forced === 'tcg') return forced;
  if (forced) throw new KfarmError('KFARM_USAGE', `KFARM_QEMU_ACCEL=${forced}: expected kvm or tcg`);
  const usable = await access('/dev/kvm', constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  if (!usable) return 'tcg';
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  return /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo) ? 'kvm' : 'tcg';
}

export interface BootOptions {
  vmlinuz: string;
  initrd: string;
  timeoutMs: number;
  accel: Accelerator;
  /** Guest memory in MiB (default 512). */
  memoryMb?: number;
  signal?: AbortSignal;
  /** Console output as it arrives (raw). */
  onOutput?: (chunk: string) => void;
  /** The QEMU binary (default qemu-system-x86_64 from PATH). */
  qemu?: string;
}

export interface BootOutcome {
  /** The serial console, with carriage returns and terminal escape sequences removed. */
  console: string;
  /** QEMU's exit code, or undefined when it was killed. */
  exitCode: number | undefined;
  timedOut: boolean;
  /** QEMU's own diagnostics (stderr). */
  stderr: string;
  durationMs: number;
}

/** The kernel command line: serial console, reboot at once on panic (with -no-reboot: QEMU exits). */
export const KERNEL_CMDLINE = 'console=ttyS0 panic=-1';

export function qemuArgs(options: BootOptions): string[] {
  return [
    '-accel',
    options.accel,
    ...(options.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-m',
    String(options.memoryMb ?? 512),
    '-smp',
    '1',
    // No NIC (and so no option ROM to load), no VGA, no default serial/monitor: only what the test needs.
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-serial',
    'stdio',
    '-no-reboot',
    '-kernel',
    options.vmlinuz,
    '-initrd',
    options.initrd,
    '-append',
    KERNEL_CMDLINE,
  ];
}

/**
 * Boots the kernel and waits until the guest powers off (or panics: QEMU exits), the time limit passes
 * (QEMU is killed; `timedOut`), or `signal` aborts (QEMU is killed, then KFARM_INTERRUPTED is thrown).
 */
export async function bootKernel(options: BootOptions): Promise<BootOutcome> {
  const started = Date.now();
  const child = spawn(options.qemu ?? QEMU, qemuArgs(options), { stdio: ['ignore', 'pipe', 'pipe'] });
  let raw = '';
  let stderr = '';
  let timedOut = false;
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    raw += chunk;
    options.onOutput?.(chunk);
  });
  child.stderr.on('data', (chunk: string) => {
    if (stderr.length < 64 * 1024) stderr += chunk;
  });
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, options.timeoutMs);
  const onAbort = () => child.kill('SIGKILL');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) onAbort();

  try {
    const exitCode = await new Promise<number | undefined>((resolve, reject) => {
      child.once('error', (error: NodeJS.ErrnoException) => {
        reject(
          error.code === 'ENOENT'
            ? new KfarmError(
                'KFARM_USAGE',
                `${options.qemu ?? QEMU}: not installed (install qemu-system-x86: scripts/setup-host.sh)`,
                { cause: error },
              )
            : error,
        );
      });
      child.once('close', (code) => resolve(code ?? undefined));
    });
    if (options.signal?.aborted)
      throw new KfarmError('KFARM_INTERRUPTED', 'interrupted', { cause: options.signal.reason });
    return { console: cleanConsole(raw), exitCode, timedOut, stderr: stderr.trim(), durationMs: Date.now() - started };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

/** Drops carriage returns and ANSI/VT100 escape sequences (SeaBIOS clears the screen on the serial port). */
export function cleanConsole(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1bc/g, '').replace(/\r/g, '');
}
