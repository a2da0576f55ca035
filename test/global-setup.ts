import { rm } from 'node:fs/promises';
import type { TestProject } from 'vitest/node';

/** Removes the run's scratch root (temp dirs and caches of every test and of the CLI processes they start). */
export default function setup(project: TestProject): () => Promise<void> {
  const root = project.config.env['KFARM_TEST_ROOT'];
  return async () => {
    if (root) await rm(root, { recursive: true, force: true });
  };
}
