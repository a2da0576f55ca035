import { mkdir, mkdtemp, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { isKfarmError } from '../../src/model/errors.js';
import { newestMtime, parseSourceDateEpoch, resolveSourceDateEpoch } from '../../src/util/source-date-epoch.js';

describe('SOURCE_DATE_EPOCH', () => {
  it('takes a whole number of seconds from the environment', async () => {
    expect(await resolveSourceDateEpoch(undefined, { SOURCE_DATE_EPOCH: '1700000000' })).toBe(1700000000);
    expect(await resolveSourceDateEpoch('/nonexistent', { SOURCE_DATE_EPOCH: '0' })).toBe(0);
  });

  it('a malformed value is a usage error naming the variable and the value', async () => {
    for (const bad of ['', 'abc', '-5', '1.5', '17e8', ' 1700000000', '99999999999999999999']) {
      const error = await resolveSourceDateEpoch(undefined, { SOURCE_DATE_EPOCH: bad }).catch((e: unknown) => e);
      expect(isKfarmError(error, 'KFARM_USAGE'), bad).toBe(true);
      expect((error as Error).message).toBe(
        `SOURCE_DATE_EPOCH=${JSON.stringify(bad)}: expected a whole number of seconds since 1970-01-01 UTC`,
      );
      expect((error as { exitCode: number }).exitCode).toBe(2);
    }
    expect(() => parseSourceDateEpoch('x', 'KFARM_X')).toThrow(/^KFARM_X="x"/);
  });

  it('defaults to the last git commit time of the source tree', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kfarm-sde-git-'));
    await writeFile(join(dir, 'dkms.conf'), 'PACKAGE_NAME=x\n');
    const env = {
      ...process.env,
      GIT_AUTHOR_DATE: '@1600000000 +0000',
      GIT_COMMITTER_DATE: '@1600000123 +0000',
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@e',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@e',
    };
    await execa('git', ['init', '-q', dir]);
    await execa('git', ['-C', dir, 'add', '.'], { env });
    await execa('git', ['-C', dir, 'commit', '-q', '-m', 'x'], { env });
    // A file touched after the commit does not move the date: the commit is the source's identity.
    await writeFile(join(dir, 'later.c'), 'x');
    const cleanEnv = { ...process.env };
    delete cleanEnv['SOURCE_DATE_EPOCH'];
    expect(await resolveSourceDateEpoch(dir, cleanEnv)).toBe(1600000123);
    // A module in a subdirectory of a larger repository is dated by the commits that touch it.
    await mkdir(join(dir, 'other'));
    await writeFile(join(dir, 'other', 'x.c'), 'x');
    await execa('git', ['-C', dir, 'add', 'other'], { env });
    await execa('git', ['-C', dir, 'commit', '-q', '-m', 'other'], {
      env: { ...env, GIT_COMMITTER_DATE: '@1600009999 +0000' },
    });
    expect(await resolveSourceDateEpoch(dir, cleanEnv)).toBe(1600009999);
    expect(await resolveSourceDateEpoch(join(dir, 'other'), cleanEnv)).toBe(1600009999);
    await mkdir(join(dir, 'untracked'));
    await writeFile(join(dir, 'untracked', 'y.c'), 'y');
    await utimes(join(dir, 'untracked', 'y.c'), 1400000000, 1400000000);
    expect(await resolveSourceDateEpoch(join(dir, 'untracked'), cleanEnv)).toBe(1400000000);
  });

  it('else the newest mtime of the files, .git left out', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kfarm-sde-files-'));
    await mkdir(join(dir, 'sub'));
    await writeFile(join(dir, 'a.c'), 'a');
    await writeFile(join(dir, 'sub', 'b.c'), 'b');
    await utimes(join(dir, 'a.c'), 1500000000, 1500000000);
    await utimes(join(dir, 'sub', 'b.c'), 1500000500, 1500000500.9);
    expect(await newestMtime(dir)).toBe(1500000500);
    const env = { ...process.env };
    delete env['SOURCE_DATE_EPOCH'];
    expect(await resolveSourceDateEpoch(dir, env)).toBe(1500000500);
    expect(await resolveSourceDateEpoch(undefined, env)).toBeUndefined();
  });
});
