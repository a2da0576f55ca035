import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PackageCache } from '../../src/images/package-cache.js';
import type { PackageFile } from '../../src/model/target.js';

const files: Record<string, Buffer> = {
  '/pool/main/l/linux/linux-headers-1_1_all.deb': Buffer.from('common '.repeat(1000)),
  '/pool/main/l/linux/linux-kbuild-1_1_amd64.deb': Buffer.from('kbuild '.repeat(500)),
};
const requests: string[] = [];
let server: Server;
let base: string;
/** Requests being answered now, and the most at once: answers are held back 20 ms to let them pile up. */
let open = 0;
let mostOpen = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const body = files[req.url ?? ''];
    open += 1;
    mostOpen = Math.max(mostOpen, open);
    setTimeout(() => {
      open -= 1;
      res.writeHead(body ? 200 : 404).end(body);
    }, 20);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function fileOf(path: string, body = files[path] as Buffer): PackageFile {
  return {
    package: path.split('/').at(-1)?.split('_')[0] ?? '',
    version: '1',
    url: base + path,
    sha256: createHash('sha256').update(body).digest('hex'),
    size: body.length,
  };
}

describe('package cache', () => {
  it('downloads a few files at a time, however many are asked for at once (a whole matrix)', async () => {
    const many = Array.from({ length: 40 }, (_, i) => `/pool/main/l/linux/linux-headers-${i}_1_amd64.deb`);
    for (const [i, path] of many.entries()) files[path] = Buffer.from(`headers ${i} `.repeat(100));
    const cache = new PackageCache(await mkdtemp(join(tmpdir(), 'kfarm-pkgs-')));
    mostOpen = 0;
    const paths = await Promise.all(many.map((path) => cache.fetchAll([fileOf(path)])));
    for (const path of many) delete files[path];
    expect(paths).toHaveLength(40);
    expect(mostOpen).toBeGreaterThan(1);
    expect(mostOpen).toBeLessThanOrEqual(8);
  });

  it('downloads each file once, in parallel, and serves it from the cache afterwards', async () => {
    const cache = new PackageCache(await mkdtemp(join(tmpdir(), 'kfarm-pkgs-')));
    const wanted = Object.keys(files).map((p) => fileOf(p));
    requests.length = 0;
    const announced: [number, number][] = [];
    const [a, b] = await Promise.all([
      cache.fetchAll(wanted, { onDownload: (n, bytes) => announced.push([n, bytes]) }),
      cache.fetchAll(wanted.slice(0, 1)),
    ]);
    expect(requests.sort()).toEqual(Object.keys(files).sort());
    expect(announced).toEqual([[2, 7000 + 3500]]);
    expect(b).toEqual([a?.[0]]);
    expect(await readFile(a?.[1] as string)).toEqual(files['/pool/main/l/linux/linux-kbuild-1_1_amd64.deb']);
    requests.length = 0;
    announced.length = 0;
    expect(await cache.fetchAll(wanted, { onDownload: (n, bytes) => announced.push([n, bytes]) })).toEqual(a);
    expect(requests).toEqual([]);
    expect(announced).toEqual([]);
  });

  it('a damaged cached file is fetched again; a download that does not match the index is not kept', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kfarm-pkgs-'));
    const cache = new PackageCache(dir);
    const [common] = Object.keys(files).map((p) => fileOf(p));
    if (!common) throw new Error('no file');
    const [path] = await cache.fetchAll([common]);
    await writeFile(path as string, 'damaged');
    requests.length = 0;
    await cache.fetchAll([common]);
    expect(requests).toHaveLength(1);
    expect(await readFile(path as string)).toEqual(files['/pool/main/l/linux/linux-headers-1_1_all.deb']);

    // The archive republished it: another SHA-256 is another file, and these bytes are not what it says.
    const republished = { ...common, sha256: 'f'.repeat(64) };
    await expect(cache.fetchAll([republished])).rejects.toThrow(/checksum mismatch/);
    expect(await readdir(dir)).toEqual([(path as string).split('/').at(-1)]);
  });
});
