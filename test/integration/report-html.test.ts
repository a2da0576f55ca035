import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TargetResult } from '../../src/model/result.js';
import { writeReports } from '../../src/report/write-reports.js';
import { repoRoot } from '../helpers/engine.js';
import { report, result } from '../unit/report-fixtures.js';

/**
 * report.html in a real browser: Debian's Chromium, headless, driven by playwright-core, on a synthetic run of 500
 * kernels (three releases, two flavours, every status, load results). The screenshot is kept as a test artifact in
 * test-artifacts/.
 */

const CHROMIUM = '/usr/bin/chromium';
let browser: Browser;

/** 500 kernels: per flavour 150 bookworm ABIs (some time out, are skipped or do not load) and 100 failing trixie kernels. */
function syntheticTargets(): TargetResult[] {
  const targets: TargetResult[] = [];
  const broken = { file: 'compatbreak.c', line: 5, column: 66, message: "passing argument 1 of 'class_create'" };
  for (const flavour of ['amd64', 'cloud-amd64']) {
    for (let abi = 1; abi <= 150; abi++) {
      const kernel = `6.1.0-${abi}-${flavour}`;
      const status = abi % 37 === 0 ? 'timeout' : abi % 41 === 0 ? 'skipped' : 'built';
      const verify = { status: abi % 29 === 0 ? ('load-failed' as const) : ('loaded' as const), durationMs: 4000 };
      targets.push(
        result('bookworm', kernel, status, { phases: phases(abi), ...(status === 'built' ? { verify } : {}) }),
      );
    }
    for (let minor = 1; minor <= 100; minor++) {
      const kernel = `6.12.${minor}+deb13-${flavour}`;
      const context = `/usr/src/linux-headers-${kernel.replace(flavour, 'common')}/include/linux/init.h:180:22`;
      targets.push(
        result('trixie', kernel, 'failed', {
          firstError: { ...broken, context },
          log: `dkms/kf/1.0/${kernel}/x86_64/log/make.log`,
          phases: phases(minor),
        }),
      );
    }
  }
  return targets;
}

function phases(n: number): TargetResult['phases'] {
  return { image: n % 5 === 0 ? 30_000 : 0, start: 200, copyIn: 50, evaluate: 70, build: 3000 + n * 10, copyOut: 40 };
}

beforeAll(async () => {
  const found = await stat(CHROMIUM).catch(() => undefined);
  if (!found) throw new Error(`${CHROMIUM} is missing: scripts/setup-host.sh installs Debian's chromium`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

afterAll(async () => {
  await browser?.close();
});

describe('report.html', () => {
  it('renders the grid, the compatibility ranges and the failure groups of 500 kernels, self-contained', async () => {
    const out = await mkdtemp(join(tmpdir(), 'kfarm-html-'));
    const targets = syntheticTargets();
    expect(targets).toHaveLength(500);
    const written = await writeReports(out, report(targets, { durationMs: 20 * 60_000 }), { sourceDir: '.' });
    expect(written.html).toBe(join(out, 'report.html'));
    const html = await readFile(written.html, 'utf8');
    expect(html).not.toMatch(/<script|<link|src=|url\(/);

    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    const started = Date.now();
    await page.goto(pathToFileURL(written.html).href, { waitUntil: 'load' });
    const loadMs = Date.now() - started;
    expect(requests).toEqual([pathToFileURL(written.html).href]);
    expect(loadMs).toBeLessThan(5000);

    // One grid per release and flavour, one row per kernel, oldest first.
    expect(await page.locator('section.release h2').allTextContents()).toEqual([
      'debian bookworm · amd64',
      'debian trixie · amd64',
      'debian bookworm · cloud-amd64',
      'debian trixie · cloud-amd64',
    ]);
    expect(await page.locator('table.grid tbody tr').count()).toBe(500);
    const firstRows = await page.locator('section.release').first().locator('td.kernel').allTextContents();
    expect(firstRows.slice(0, 3)).toEqual(['6.1.0-1-amd64', '6.1.0-2-amd64', '6.1.0-3-amd64']);
    // Every status cell says its status in words (readable without colour).
    const statuses = new Set(await page.locator('table.grid td.st').allTextContents());
    expect([...statuses].sort()).toEqual(['built', 'failed', 'load-failed', 'loaded', 'skipped', 'timeout', '—']);

    const ranges = await page.locator('#compat li').allTextContents();
    expect(ranges).toContain(
      "trixie amd64: fails on 6.12.1+deb13-amd64 … 6.12.100+deb13-amd64 with compatbreak.c:5:66: passing argument 1 of 'class_create'",
    );
    const timeouts = '6.1.0-37-amd64, 6.1.0-74-amd64, 6.1.0-111-amd64, 6.1.0-148-amd64';
    expect(ranges).toContain(
      `bookworm amd64: fails on ${timeouts} with timeout; builds up to 6.1.0-36-amd64; builds again from 6.1.0-149-amd64`,
    );
    const groups = page.locator('#failures li.group');
    expect(await groups.count()).toBeGreaterThanOrEqual(2);
    expect(await groups.first().textContent()).toContain(
      'at /usr/src/linux-headers-6.12.1+deb13-common/include/linux/init.h',
    );
    expect(await page.locator('a[href$="make.log"]').count()).toBe(200);
    // The time bars are drawn: a failed trixie row has its phases as coloured spans with widths.
    const widths = await page
      .locator('table.grid tbody tr .bar .ph-build')
      .evaluateAll((spans): number[] =>
        spans.map((s: { getBoundingClientRect(): { width: number } }) => s.getBoundingClientRect().width),
      );
    expect(widths.filter((w) => w > 0)).toHaveLength(widths.length);

    const artifact = join(repoRoot, 'test-artifacts', 'report-html-500.png');
    await page.screenshot({ path: artifact });
    expect((await stat(artifact)).size).toBeGreaterThan(10_000);
    await page.close();
  });
});
