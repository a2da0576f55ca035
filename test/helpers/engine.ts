import Docker from 'dockerode';
import { fileURLToPath } from 'node:url';
import { mkdtemp } from 'node:fs/promises';
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
