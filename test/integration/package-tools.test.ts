import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectEngine } from '../../src/engine/index.js';
import { newSession } from '../../src/engine/labels.js';
import { ImageStore } from '../../src/images/image-store.js';
import { ToolImages, toolRef } from '../../src/images/tool-images.js';
import { releaseSources } from '../../src/plan/resolve.js';
import { requireEngine, tempOut } from '../helpers/engine.js';

describe('tool images', () => {
  it('kfarm/tools-<release>:<tool> is prepared once when asked for twice at once, labelled, then reused by a later run', async () => {
    const docker = await requireEngine();
    const engine = await connectEngine(newSession(`tools-test-${process.pid}`));
    const ref = toolRef('bookworm', 'rpm');
    expect(ref).toBe('kfarm/tools-bookworm:rpm');
    await docker
      .getImage(ref)
      .remove({ force: true })
      .catch(() => undefined);

    const logDir = await tempOut('kfarm-tools-logs-');
    const images = new ImageStore(engine, { logDir, sources: releaseSources });
    const prepared: string[] = [];
    const reused: string[] = [];
    const events = {
      onPrepare: (r: string) => prepared.push(r),
      onReady: (r: string, _ms: number, wasReused: boolean) => void (wasReused && reused.push(r)),
    };
    const tools = new ToolImages(engine, images, { logDir, events });
    const [a, b] = await Promise.all([tools.get('bookworm', 'rpm'), tools.get('bookworm', 'rpm')]);
    expect([a, b]).toEqual([ref, ref]);
    expect(prepared).toEqual([ref]);

    const labels = (await docker.getImage(ref).inspect()).Config.Labels;
    expect(labels).toMatchObject({
      'kfarm.role': 'tool',
      'kfarm.release': 'bookworm',
      'kfarm.tool': 'rpm',
      'kfarm.session': '',
    });
    expect(labels['kfarm.recipe']).toMatch(/^[0-9a-f]{16}$/);

    // The image really holds the release's rpmbuild.
    const container = await engine.start({ image: ref, cmd: ['sleep', '60'], network: 'none', hardened: true });
    try {
      expect(await container.exec(['rpmbuild', '--version'])).toBe(0);
    } finally {
      await container.remove();
    }

    prepared.length = 0;
    const later = new ToolImages(
      engine,
      new ImageStore(engine, { logDir: join(logDir, 'later'), sources: releaseSources }),
      { logDir, events },
    );
    expect(await later.get('bookworm', 'rpm')).toBe(ref);
    expect(prepared).toEqual([]);
    expect(reused).toEqual([ref]);
    const left = await docker.listContainers({ all: true, filters: { label: [`kfarm.session=${engine.session.id}`] } });
    expect(left).toEqual([]);
  });
});
