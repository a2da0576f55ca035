import type { VerifyResult } from '../model/result.js';
import type { VerifyEvent } from './verify.js';

/** Timestamped progress lines for `kfarm verify` (and `kfarm build --verify`), like the build's. */
export function verifyProgress(write: (line: string) => void, started = Date.now()): (event: VerifyEvent) => void {
  const stamp = () => {
    const s = Math.floor((Date.now() - started) / 1000);
    return `[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}]`;
  };
  return (event) => {
    switch (event.kind) {
      case 'download':
        write(
          `${stamp()} kernel ${event.kernel}: downloading ${event.url} (${(event.size / 1024 ** 2).toFixed(1)} MiB)`,
        );
        break;
      case 'unpack':
        write(`${stamp()} kernel ${event.kernel}: unpacking ${event.package} and indexing its modules`);
        break;
      case 'ready':
        if (!event.cached) write(`${stamp()} kernel ${event.kernel}: ready in ${(event.ms / 1000).toFixed(1)} s`);
        break;
      case 'boot':
        write(`${stamp()} ${event.id}: booting (${event.accel === 'kvm' ? 'KVM' : 'TCG, no KVM'})`);
        break;
      case 'result':
        write(`${stamp()} ${event.id}: ${describeVerify(event.result)}`);
        break;
      case 'skip':
        write(`${stamp()} ${event.id}: not verified (build ${event.status})`);
        break;
    }
  };
}

/** One line: `loaded in 6.1 s`, `load-failed after 4.0 s: kf_x: Unknown symbol foo (err -2)`. */
export function describeVerify(result: VerifyResult): string {
  const seconds = `${(result.durationMs / 1000).toFixed(1)} s`;
  return result.status === 'loaded'
    ? `loaded in ${seconds}`
    : `${result.status} after ${seconds}: ${result.reason ?? ''}`;
}
