import { readFile } from 'node:fs/promises';

/** Host-wide CPU time from /proc/stat, in seconds: busy (user+nice+system+irq+softirq+steal) and total. */
export async function cpuTimes(): Promise<{ busy: number; idle: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const hz = 100; // USER_HZ, 100 on every Linux ABI kfarm runs on
  return { busy: (user + nice + system + irq + softirq + steal) / hz, idle: (idle + iowait) / hz };
}

/**
 * CPU seconds spent inside the engine's containers so far: the `docker` cgroup's hierarchical counter, which
 * keeps what removed containers used (cgroup v1 cpuacct, or v2 cpu.stat with the cgroupfs driver). Undefined
 * where neither exists (a systemd cgroup driver puts containers elsewhere).
 */
export async function containerCpu(): Promise<number | undefined> {
  const v1 = await readFile('/sys/fs/cgroup/cpuacct/docker/cpuacct.usage', 'utf8').catch(() => undefined);
  if (v1 !== undefined) return Number(v1.trim()) / 1e9;
  const v2 = await readFile('/sys/fs/cgroup/docker/cpu.stat', 'utf8').catch(() => undefined);
  const usec = v2 && /^usage_usec (\d+)$/m.exec(v2)?.[1];
  return usec ? Number(usec) / 1e6 : undefined;
}
