import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imagesDir } from '../util/paths.js';

/**
 * The scripts kfarm runs inside builder containers (images/runtime/): `eval-conf.sh` sources
 * dkms.conf as DKMS does, `build.sh` is DKMS's prepare_build + actual_build. They are passed to `bash -c`,
 * so nothing is bind-mounted and a remote engine works.
 */
export interface RuntimeScripts {
  evalConf: string;
  build: string;
  /** Writes the results as a tar stream, cutting an oversized make.log to its head and tail first. */
  collect: string;
  /** A warm builder's setup (source, kernel links) and its reset between targets. */
  builder: string;
  /** Runs the others (perl), so that a target's steps are not engine calls; see farm/agent-container.ts. */
  agent: string;
}

let loaded: Promise<RuntimeScripts> | undefined;

export function runtimeScripts(): Promise<RuntimeScripts> {
  loaded ??= (async () => ({
    evalConf: await readFile(join(imagesDir, 'runtime/eval-conf.sh'), 'utf8'),
    build: await readFile(join(imagesDir, 'runtime/build.sh'), 'utf8'),
    collect: await readFile(join(imagesDir, 'runtime/collect.sh'), 'utf8'),
    builder: await readFile(join(imagesDir, 'runtime/builder.sh'), 'utf8'),
    agent: await readFile(join(imagesDir, 'runtime/agent.pl'), 'utf8'),
  }))();
  return loaded;
}

/** Identifies the in-container scripts, for the result cache key. */
export async function runtimeHash(): Promise<string> {
  const scripts = await runtimeScripts();
  const hash = createHash('sha256');
  for (const script of [scripts.evalConf, scripts.build, scripts.collect]) hash.update(script).update('\0');
  return hash.digest('hex');
}
