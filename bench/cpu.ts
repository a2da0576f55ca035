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
