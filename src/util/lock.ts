import { mkdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import lockfile from 'proper-lockfile';

/**
 * Runs `work` holding a lock shared by every kfarm process on this machine (and any that see the same
 * directory): two runs that want the same new builder image prepare it once, the second waits and then
 * finds it ready. The lock is a directory that proper-lockfile keeps fresh while held, so one left by a killed
 * process goes stale (10 s) and is taken over.
 */
export async function withLock<T>(dir: string, name: string, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  await mkdir(dir, { recursive: true });
  const target = `${dir}/${name.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
  const release = await acquire(target, signal);
  try {
    return await work();
  } finally {
    await release().catch(() => undefined);
  }
}

async function acquire(target: string, signal?: AbortSignal): Promise<() => Promise<void>> {
  for (;;) {
    signal?.throwIfAborted();
    try {
      // A lock lost to a stalled event loop costs at worst a second preparation of the same image, not a crash.
      const onCompromised = () => undefined;
      return await lockfile.lock(target, { realpath: false, stale: 10_000, update: 2_000, onCompromised });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw error;
      await sleep(500, undefined, signal ? { signal } : {});
    }
  }
}
