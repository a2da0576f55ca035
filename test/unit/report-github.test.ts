import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { FirstError } from '../../src/model/result.js';
import {
  escapeData,
  escapeProperty,
  githubAnnotations,
  MAX_ANNOTATIONS,
  sourcePrefixFor,
} from '../../src/report/github.js';
import { kernels, report, result } from './report-fixtures.js';

describe('GitHub workflow command escaping', () => {
  // The rules of @actions/core (toolkit/packages/core/src/command.ts): data escapes % CR LF; properties also : and ,.
  const table: [string, string, string][] = [
    ['plain', 'plain', 'plain'],
    ['100%', '100%25', '100%25'],
    ['a\nb', 'a%0Ab', 'a%0Ab'],
    ['a\r\nb', 'a%0D%0Ab', 'a%0D%0Ab'],
    ['k: v', 'k: v', 'k%3A v'],
    ['a, b', 'a, b', 'a%2C b'],
    ['%0A', '%250A', '%250A'],
    [
      '6.12.117+deb13-amd64, 6.1.0-56-amd64: x%',
      '6.12.117+deb13-amd64, 6.1.0-56-amd64: x%25',
      '6.12.117+deb13-amd64%2C 6.1.0-56-amd64%3A x%25',
    ],
    ['::error::', '::error::', '%3A%3Aerror%3A%3A'],
  ];
  for (const [input, data, property] of table) {
    it(JSON.stringify(input), () => {
      expect(escapeData(input)).toBe(data);
      expect(escapeProperty(input)).toBe(property);
    });
  }
});

describe('githubAnnotations', () => {
  const undeclared: FirstError = {
    file: 'kf_broken.c',
    line: 7,
    column: 19,
    message: "'x' undeclared (first use in this function)",
  };
  const header: (k: string) => FirstError = (k) => ({
    file: `/usr/src/linux-headers-${k.replace(/-amd64$/, '')}-common/include/linux/types.h`,
    line: 179,
    column: 8,
    message: "redefinition of 'struct list_head'",
  });
  const modpost: FirstError = {
    message: 'modpost: "kf_no_such_function" [/var/lib/dkms/kf/1.0/build/kf.ko] undefined!',
  };

  it('one annotation per distinct in-tree error naming its kernels, most kernels first; file-less ones de-duplicated', () => {
    const ks = kernels(3);
    const targets = [
      ...ks.map((k) => result('trixie', k, 'failed')),
      result('bookworm', '6.1.0-56-amd64', 'failed'),
      result('bookworm', '6.1.0-55-amd64', 'timeout', { error: 'build exceeded 1800 s' }),
      result('bookworm', '6.1.0-54-amd64', 'built'),
      result('sid', '6.16.1-amd64', 'expected-failure'),
    ];
    const diagnostics = new Map<string, FirstError[]>([
      // Filled in another order than the report: the output follows the report.
      ['debian/bookworm/6.1.0-56-amd64', [modpost, header('6.1.0-56-amd64')]],
      ...ks.map(
        (k, i) =>
          [
            `debian/trixie/${k}`,
            i === 2
              ? [undeclared, { ...undeclared, line: 9, message: 'expected \';\', got "100%"' }, modpost]
              : [undeclared, modpost],
          ] as [string, FirstError[]],
      ),
      ['debian/bookworm/6.1.0-54-amd64', [undeclared]], // built: ignored
      ['debian/sid/6.16.1-amd64', [undeclared]], // expected failure: ignored
    ]);
    const lines = githubAnnotations(report(targets), diagnostics, { sourcePrefix: 'drivers/kf' });
    expect(lines).toEqual([
      '::error title=kfarm%3A fails on 4 kernels%3A ' +
        '6.12.90+deb13-amd64%2C 6.12.91+deb13-amd64%2C 6.12.92+deb13-amd64%2C 6.1.0-56-amd64' +
        '::modpost: "kf_no_such_function" [/var/lib/dkms/kf/1.0/build/kf.ko] undefined!',
      '::error file=drivers/kf/kf_broken.c,line=7,col=19,title=kfarm%3A fails on 3 kernels%3A ' +
        '6.12.90+deb13-amd64%2C 6.12.91+deb13-amd64%2C 6.12.92+deb13-amd64' +
        "::'x' undeclared (first use in this function)",
      '::error file=drivers/kf/kf_broken.c,line=9,col=19,title=kfarm%3A fails on 1 kernel%3A 6.12.92+deb13-amd64' +
        '::expected \';\', got "100%25"',
      '::error title=kfarm%3A fails on 1 kernel%3A 6.1.0-56-amd64' +
        "::/usr/src/linux-headers-6.1.0-56-common/include/linux/types.h:179:8: redefinition of 'struct list_head'",
      '::error title=kfarm%3A timeout on 1 kernel%3A 6.1.0-55-amd64::build exceeded 1800 s',
    ]);
  });

  it('the same line tagged differently by gcc 12 and gcc 14 is one annotation without the tag; no prefix at the repo root', () => {
    const a: FirstError = {
      file: 'kf.c',
      line: 14,
      column: 9,
      message: "implicit declaration of function 'f' [-Werror=implicit-function-declaration]",
    };
    const b: FirstError = { ...a, message: "implicit declaration of function 'f' [-Wimplicit-function-declaration]" };
    const targets = [
      result('bookworm', '6.1.0-56-amd64', 'failed'),
      result('trixie', '6.12.117+deb13-amd64', 'failed'),
    ];
    const lines = githubAnnotations(
      report(targets),
      new Map([
        [targets[0]!.id, [a]],
        [targets[1]!.id, [b]],
      ]),
      { sourcePrefix: '' },
    );
    expect(lines).toEqual([
      '::error file=kf.c,line=14,col=9,title=kfarm%3A fails on 2 kernels%3A 6.1.0-56-amd64%2C 6.12.117+deb13-amd64' +
        "::implicit declaration of function 'f'",
    ]);
  });

  it('at most 50, and many kernels are listed compactly in the title', () => {
    const ks = kernels(6);
    const targets = ks.map((k) => result('trixie', k, 'failed'));
    const many: FirstError[] = Array.from({ length: 80 }, (_, i) => ({ file: 'kf.c', line: i + 1, message: `e${i}` }));
    const lines = githubAnnotations(report(targets), new Map(targets.map((t) => [t.id, many])), {
      sourcePrefix: 'src',
    });
    expect(lines).toHaveLength(MAX_ANNOTATIONS);
    expect(lines[0]).toBe(
      '::error file=src/kf.c,line=1,title=kfarm%3A fails on 6 kernels%3A ' +
        '6.12.90+deb13-amd64%2C 6.12.91+deb13-amd64%2C 6.12.92+deb13-amd64 and 3 more::e0',
    );
    expect(lines[49]).toContain('::e49');
  });

  it('a newline in a message cannot end the command', () => {
    const targets = [result('trixie', '6.12.1-amd64', 'failed')];
    const [line] = githubAnnotations(report(targets), new Map([[targets[0]!.id, [{ message: 'a\n::warning::b' }]]]), {
      sourcePrefix: '',
    });
    expect(line).toBe('::error title=kfarm%3A fails on 1 kernel%3A 6.12.1-amd64::a%0A::warning::b');
    expect(line).not.toContain('\n');
  });

  it('sourcePrefixFor: relative to GITHUB_WORKSPACE (else cwd), posix, empty at the root', () => {
    expect(sourcePrefixFor('/ws/repo/drivers/kf', { GITHUB_WORKSPACE: '/ws/repo' })).toBe('drivers/kf');
    expect(sourcePrefixFor('/ws/repo', { GITHUB_WORKSPACE: '/ws/repo/' })).toBe('');
    expect(sourcePrefixFor('/ws/repo/./a/../b', { GITHUB_WORKSPACE: '/ws/repo' })).toBe('b');
    expect(sourcePrefixFor(join(process.cwd(), 'test/fixtures/broken'), {})).toBe('test/fixtures/broken');
    expect(sourcePrefixFor('test/fixtures/broken', {})).toBe('test/fixtures/broken');
  });
});
