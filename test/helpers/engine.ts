import Docker from 'dockerode';
import { execa } from 'execa';
import type { Target } from '../../src/model/result.js';
import { resolveTargets } from '../../src/plan/resolve.js';
import { fileURLToPath } from 'node:url';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
export const fixture = (name: string) => join(repoRoot, 'test/fixtures', name);
export const example = (name: string) => join(repoRoot, 'examples', name);
export const cli = join(repoRoot, 'bin/kfarm.js');

/**
 * Integration tests need a real engine. They fail loudly when there is none (in CI a missing engine is a
 * broken set-up, never a reason to skip).
 */
export async function requireEngine(): Promise<Docker> {
  const docker = new Docker();
  try {
    await docker.ping();
  } catch (error) {
    throw new Error(
      `integration tests need a container engine (run scripts/setup-host.sh as root): ${(error as Error).message}`,
      { cause: error },
    );
  }
  return docker;
}

export async function kfarmContainers(docker: Docker): Promise<string[]> {
  const list = await docker.listContainers({ all: true, filters: { label: ['kfarm.session'] } });
  return list.map((c) => `${c.Id.slice(0, 12)} ${c.Labels['kfarm.target'] ?? ''}`);
}

export function tempOut(prefix = 'kfarm-it-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** The target the default matrix picks for `release` (the kernel a user of that release runs today). */
export async function supportedTarget(release: string): Promise<Target> {
  const targets = await resolveTargets({ matrix: join(repoRoot, 'matrix/debian-supported.yaml') });
  const target = targets.find((t) => t.release === release);
  if (!target) throw new Error(`the default matrix has no ${release} target`);
  return target;
}

/** A tmpfs mounted at a new directory (root only); `unmountAll` removes every one mounted so far. */
const mounted: string[] = [];
export async function tmpfsMount(options: string): Promise<string> {
  const dir = join(await tempOut(), 'mnt');
  await mkdir(dir);
  await execa('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir]);
  mounted.push(dir);
  return dir;
}

export async function unmountAll(): Promise<void> {
  for (const dir of mounted.splice(0)) await execa('umount', ['-l', dir], { reject: false });
}

/** Runs the built CLI as CI would (`CI=true`: plain progress lines), never throwing on its exit code. */
export function runKfarm(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; timeout?: number } = {},
) {
  return execa('node', [cli, ...args], {
    reject: false,
    cwd: options.cwd ?? repoRoot,
    env: { ...options.env, CI: 'true' },
    ...(options.timeout ? { timeout: options.timeout } : {}),
  });
}
