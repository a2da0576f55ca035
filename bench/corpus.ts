/**
 * bench/corpus: every `*-dkms` package a release's archive lists, built by kfarm from its .deb for the release's
 * newest kernel (the default matrix's `latest`), one `kfarm build <file>.deb` each, as a user would run it.
 * Prints per package kfarm's status, time and first error, then the totals. Not a test: its figures go in the
 * README. Usage: bench/corpus [release] [name-filter]   (default trixie, every package)
 */
import { execa } from 'execa';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PackageCache } from '../src/images/package-cache.js';
import { lookupPackages } from '../src/plan/debian-lookup.js';
import { resolveTargets } from '../src/plan/resolve.js';
import { cacheRoot } from '../src/util/cache-dir.js';
import type { FirstError } from '../src/model/result.js';

const root = new URL('..', import.meta.url).pathname;
const release = process.argv[2] ?? 'trixie';
const filter = new RegExp(process.argv[3] ?? '.');

const [target] = (await resolveTargets({ matrix: join(root, 'matrix/debian-supported.yaml') })).filter(
  (t) => t.release === release,
);
if (!target) throw new Error(`the default matrix has no ${release} kernel`);
const found = await lookupPackages(release, (name) => name.endsWith('-dkms') && filter.test(name));
const packages = [...found.values()].sort((a, b) => a.package.localeCompare(b.package));
const files = await new PackageCache(join(cacheRoot(), 'packages')).fetchAll(packages);
console.log(`bench/corpus: ${packages.length} *-dkms packages of ${release}, for ${target.id}`);

interface Row {
  name: string;
  version: string;
  status: string;
  seconds: number;
  why: string;
}
const rows: Row[] = [];
for (const [i, deb] of packages.entries()) {
  const out = await mkdtemp(join(tmpdir(), 'kfarm-corpus-'));
  const t0 = performance.now();
  const run = await execa(
    'node',
    [join(root, 'bin/kfarm.js'), 'build', files[i] as string, '-t', target.id, '-o', out, '--no-cache'],
    {
      cwd: root,
      reject: false,
      env: { CI: 'true' },
    },
  );
  const seconds = (performance.now() - t0) / 1000;
  const row = { name: deb.package, version: deb.version, seconds, ...(await outcome(out, run)) };
  rows.push(row);
  console.log(
    `${row.name.padEnd(32)} ${row.version.padEnd(28)} ${row.status.padEnd(10)} ${seconds.toFixed(1).padStart(7)} s  ${row.why}`,
  );
}

const count = (status: string) => rows.filter((r) => r.status === status).length;
const statuses = [...new Set(rows.map((r) => r.status))].sort();
console.log(
  `totals: ${rows.length} packages, ${statuses.map((s) => `${count(s)} ${s}`).join(', ')}; ` +
    `${rows.reduce((a, r) => a + r.seconds, 0).toFixed(0)} s in all`,
);

/** The target's status and first error from report.json, or kfarm's own one-line error (exit 2: bad input). */
async function outcome(
  out: string,
  run: { exitCode?: number; stderr: string },
): Promise<{ status: string; why: string }> {
  const report = await readFile(join(out, 'report.json'), 'utf8').then(
    (text) => JSON.parse(text) as { targets: Array<{ status: string; error?: string; firstError?: FirstError }> },
    () => undefined,
  );
  const t = report?.targets[0];
  if (!t) return { status: `exit-${run.exitCode ?? '?'}`, why: run.stderr.trim().split('\n').at(-1) ?? '' };
  // The first compiler error says more than make's last line.
  const why = t.firstError ? `${t.firstError.file}:${t.firstError.line}: ${t.firstError.message}` : (t.error ?? '');
  return { status: t.status, why: why.slice(0, 160) };
}
