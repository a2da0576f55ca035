import { lstat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { KfarmError } from '../model/errors.js';
import { readJsonReport, type FarmReport } from '../model/report.js';

/** A package file of a build output, as publishing takes it. */
export interface PublishedFile {
  /** Absolute path of the file in `<out>/packages/`. */
  path: string;
  /** Its file name, which it keeps in the repository's pool. */
  name: string;
  /** Debian releases whose distribution gets it: the target's, or every built target's for a run's package. */
  releases: string[];
}

export interface PublishInputs {
  debs: PublishedFile[];
  rpms: PublishedFile[];
}

/** Package file names kfarm writes; anything else in a report (hand-edited, hostile) is refused. */
const PACKAGE_FILE = /^[A-Za-z0-9][A-Za-z0-9_.+~-]*\.(deb|rpm)$/;

/**
 * The .deb and .rpm files the reports of `outs` list (targets' `packages` and the run's own), each checked to be
 * a regular file (not a link) under `<out>/packages/` with a name kfarm would give it.
 */
export async function readPublishInputs(outs: string[]): Promise<PublishInputs> {
  if (outs.length === 0) throw new KfarmError('KFARM_USAGE', 'kfarm publish: give at least one build output');
  const inputs: PublishInputs = { debs: [], rpms: [] };
  for (const out of outs) {
    const report = await readJsonReport(out);
    for (const file of await filesOf(resolve(out), report)) {
      if (file.name.endsWith('.deb')) inputs.debs.push(file);
      else inputs.rpms.push(file);
    }
  }
  if (inputs.debs.length + inputs.rpms.length === 0)
    throw new KfarmError(
      'KFARM_USAGE',
      `${outs.join(', ')}: no .deb or .rpm packages to publish (run kfarm package --format deb,rpm first)`,
    );
  return inputs;
}

async function filesOf(out: string, report: FarmReport): Promise<PublishedFile[]> {
  const built = report.targets.filter((t) => (t.packages ?? []).length > 0);
  const everyRelease = [...new Set(built.map((t) => t.release))].sort();
  const listed = [
    ...built.flatMap((t) => (t.packages ?? []).map((p) => ({ p, releases: [t.release] }))),
    ...(report.packages ?? []).map((p) => ({ p, releases: everyRelease })),
  ];
  const files: PublishedFile[] = [];
  for (const { p, releases } of listed) {
    const name = p.slice('packages/'.length);
    if (!PACKAGE_FILE.test(name)) continue;
    const path = join(out, 'packages', name);
    const info = await lstat(path).catch(() => undefined);
    if (!info?.isFile())
      throw new KfarmError(
        'KFARM_USAGE',
        `${path}: ${info ? 'not a regular file' : 'listed in report.json but missing'} (package the output again)`,
      );
    files.push({ path, name, releases });
  }
  return files;
}
