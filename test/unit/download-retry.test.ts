import { createHash } from 'node:crypto';
import { createServer, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { downloadVerified } from '../../src/plan/download.js';

const body = Buffer.from('kernel headers '.repeat(4000));
const expected = { size: body.length, sha256: createHash('sha256').update(body).digest('hex') };
const fast = { stallMs: 300, backoffMs: 10 };

/** How each request is answered, in order; requests past the list are answered in full. */
type Answer = 'full' | 'silent' | 'half-then-silent' | '503' | '404';
let script: Answer[] = [];
let requests = 0;
const hanging: ServerResponse[] = [];
let server: Server;
let base: string;

function answer(res: ServerResponse, how: Answer): void {
  if (how === 'full') res.writeHead(200, { 'content-length': body.length }).end(body);
  else if (how === '503' || how === '404') res.writeHead(Number(how)).end();
  else if (how === 'half-then-silent') {
    res.writeHead(200, { 'content-length': body.length }).write(body.subarray(0, body.length / 2));
    hanging.push(res);
  } else hanging.push(res);
}

beforeAll(async () => {
  server = createServer((_req, res) => answer(res, script[requests++] ?? 'full'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  for (const res of hanging) res.destroy();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
beforeEach(() => {
  requests = 0;
});

async function download(answers: Answer[], attempts = 3): Promise<{ dir: string; dest: string; result: unknown }> {
  script = answers;
  const dir = await mkdtemp(join(tmpdir(), 'kfarm-download-'));
  const dest = join(dir, 'pkg.deb');
  const result = await downloadVerified(`${base}/pkg.deb`, dest, expected, undefined, { ...fast, attempts }).catch(
    (error: unknown) => error,
  );
  return { dir, dest, result };
}

describe('downloadVerified retries what may pass', () => {
  it('cuts a server that never answers and succeeds on the next try', async () => {
    const { dest, result } = await download(['silent']);
    expect(result).toBeUndefined();
    expect(requests).toBe(2);
    expect(await readFile(dest)).toEqual(body);
  });

  it('cuts a body that stops half-way and succeeds on the next try', async () => {
    const { dest, result } = await download(['half-then-silent', '503']);
    expect(result).toBeUndefined();
    expect(requests).toBe(3);
    expect(await readFile(dest)).toEqual(body);
  });

  it('gives up after the last try with the stall named, leaving nothing behind', async () => {
    const { dir, result } = await download(['silent', 'half-then-silent'], 2);
    expect(requests).toBe(2);
    expect((result as Error).message).toBe(`cannot fetch ${base}/pkg.deb: stalled (no data for 0.3 s)`);
    expect(await readdir(dir)).toEqual([]);
  });

  it('does not ask again after a 404', async () => {
    const { result } = await download(['404']);
    expect(requests).toBe(1);
    expect((result as Error).message).toBe(`cannot fetch ${base}/pkg.deb: HTTP 404`);
  });
});
