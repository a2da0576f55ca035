import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { attr, renderJunit, text } from '../../src/report/junit.js';
import { lastLines } from '../../src/util/read-file.js';
import { report, result } from './report-fixtures.js';

interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

/** A strict little XML parser for the subset renderJunit writes (elements, attributes, text, entities). */
function parseXml(xml: string): XmlElement {
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`XML: ${what} at ${i}: ${JSON.stringify(xml.slice(i, i + 40))}`);
  };
  const decode = (s: string) =>
    s.replace(/&(#\d+|#x[0-9a-f]+|amp|lt|gt|quot|apos);|&/gi, (all, ref: string | undefined) => {
      if (ref === undefined) return fail('bare &');
      if (ref.startsWith('#x')) return String.fromCodePoint(parseInt(ref.slice(2), 16));
      if (ref.startsWith('#')) return String.fromCodePoint(Number(ref.slice(1)));
      return ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" } as Record<string, string>)[ref] ?? all;
    });
  const skipSpace = () => {
    while (/\s/.test(xml[i] ?? '')) i++;
  };
  if (xml.startsWith('<?xml')) i = xml.indexOf('?>') + 2;
  skipSpace();
  const element = (): XmlElement => {
    if (xml[i] !== '<') fail('expected <');
    i++;
    const name = /^[\w-]+/.exec(xml.slice(i))?.[0] ?? fail('name');
    i += name.length;
    const el: XmlElement = { name, attrs: {}, children: [], text: '' };
    for (;;) {
      skipSpace();
      if (xml.startsWith('/>', i)) {
        i += 2;
        return el;
      }
      if (xml[i] === '>') {
        i++;
        break;
      }
      const attrName = /^[\w-]+/.exec(xml.slice(i))?.[0] ?? fail('attribute');
      i += attrName.length;
      if (xml[i] !== '=' || xml[i + 1] !== '"') fail('="');
      const end = xml.indexOf('"', i + 2);
      const raw = xml.slice(i + 2, end);
      if (raw.includes('<')) fail('< in attribute');
      if (attrName in el.attrs) fail('duplicate attribute');
      el.attrs[attrName] = decode(raw);
      i = end + 1;
    }
    for (;;) {
      const lt = xml.indexOf('<', i);
      if (lt === -1) fail('unclosed');
      el.text += decode(xml.slice(i, lt));
      i = lt;
      if (xml.startsWith(`</${name}>`, i)) {
        i += name.length + 3;
        return el;
      }
      el.children.push(element());
    }
  };
  const root = element();
  skipSpace();
  if (i !== xml.length) fail('trailing content');
  return root;
}

function xmllint(xml: string): { available: boolean; ok: boolean; stderr: string } {
  const which = spawnSync('xmllint', ['--version']);
  if (which.error) return { available: false, ok: true, stderr: '' };
  const file = join(mkdtempSync(join(tmpdir(), 'kfarm-junit-')), 'junit.xml');
  writeFileSync(file, xml);
  const run = spawnSync('xmllint', ['--noout', file], { encoding: 'utf8' });
  return { available: true, ok: run.status === 0, stderr: run.stderr };
}

const hostile = 'a "quoted" <tag> & \'apos\' ]]> \x00\x01\x08\x0b\x0c\x1b[31m \uFFFE \ud800 tab\there\r\nnext';

const sample = report(
  [
    result('bookworm', '6.1.0-56-amd64', 'built', {
      durationMs: 1300,
      log: 'dkms/kf/1.0/6.1.0-56-amd64/x86_64/log/make.log',
    }),
    result('trixie', '6.12.117+deb13-amd64', 'failed', {
      durationMs: 1832,
      log: 'dkms/kf/1.0/6.12.117+deb13-amd64/x86_64/log/make.log',
      error: 'make exited 2 (bad return status for module build on kernel 6.12.117+deb13-amd64 (x86_64))',
      firstError: { file: 'kf.c', line: 7, column: 19, message: '\'x\' undeclared <first use> & "more"' },
    }),
    result('trixie', '6.12.94+deb13-amd64', 'timeout', { durationMs: 1_800_000, error: 'build exceeded 1800 s' }),
    result('trixie', '6.12.95+deb13-amd64', 'oom', { error: hostile }),
    result('bookworm', '6.1.0-55-amd64', 'skipped', {
      error: 'BUILD_EXCLUSIVE_KERNEL="^6\\.12" does not match 6.1.0-55-amd64',
    }),
    result('sid', '6.16.1-amd64', 'expected-failure', {
      expected: 'upstream API change (#12)',
      error: 'make exited 2',
    }),
    result('bookworm', '6.1.0-54-amd64', 'cached', { durationMs: 40 }),
  ],
  { notRun: ['debian/forky/6.17.1-amd64'] },
);

const tails: Record<string, string> = {
  'dkms/kf/1.0/6.1.0-56-amd64/x86_64/log/make.log': 'built fine\n',
  'dkms/kf/1.0/6.12.117+deb13-amd64/x86_64/log/make.log':
    Array.from({ length: 150 }, (_, i) => `line ${i + 1}`).join('\n') +
    `\n\x1b[01;31merror:\x1b[m </system-out> ${hostile}\n`,
};
const logs = { tail: async (path: string) => tails[path] ?? '' };

describe('renderJunit', () => {
  it('is well-formed XML (xmllint) with the suite counts and one test case per kernel', async () => {
    const xml = await renderJunit(sample, logs);
    const lint = xmllint(xml);
    expect(lint.stderr).toBe('');
    expect(lint.ok).toBe(true);
    if (!lint.available) console.warn('xmllint not installed: only the built-in parser checked the XML');

    expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites ')).toBe(true);
    const root = parseXml(xml);
    expect(root.name).toBe('testsuites');
    expect(root.children).toHaveLength(1);
    const suite = root.children[0]!;
    expect(suite.name).toBe('testsuite');
    expect(suite.attrs).toEqual({
      name: 'kf 1.0',
      tests: '8',
      failures: '3',
      errors: '0',
      skipped: '3',
      time: '61.000',
      timestamp: '2026-11-22T02:53:20.609Z',
    });
    expect(root.attrs).toMatchObject({ tests: '8', failures: '3', skipped: '3' });
    expect(suite.children.map((c) => [c.name, c.attrs.classname, c.attrs.name, c.attrs.time])).toEqual([
      ['testcase', 'debian.bookworm', 'debian/bookworm/6.1.0-56-amd64', '1.300'],
      ['testcase', 'debian.trixie', 'debian/trixie/6.12.117+deb13-amd64', '1.832'],
      ['testcase', 'debian.trixie', 'debian/trixie/6.12.94+deb13-amd64', '1800.000'],
      ['testcase', 'debian.trixie', 'debian/trixie/6.12.95+deb13-amd64', '1.500'],
      ['testcase', 'debian.bookworm', 'debian/bookworm/6.1.0-55-amd64', '1.500'],
      ['testcase', 'debian.sid', 'debian/sid/6.16.1-amd64', '1.500'],
      ['testcase', 'debian.bookworm', 'debian/bookworm/6.1.0-54-amd64', '0.040'],
      ['testcase', 'debian.forky', 'debian/forky/6.17.1-amd64', '0.000'],
    ]);
    const [built, failed, timeout, oom, skipped, expected, cached, notRun] = suite.children as [
      XmlElement,
      XmlElement,
      ...XmlElement[],
    ];

    expect(built.children.map((c) => c.name)).toEqual(['system-out']);
    expect(built.children[0]!.text).toBe('built fine');

    expect(failed.children.map((c) => c.name)).toEqual(['failure', 'system-out']);
    const failure = failed.children[0]!;
    expect(failure.attrs).toEqual({ message: 'kf.c:7:19: \'x\' undeclared <first use> & "more"', type: 'failed' });
    expect(failure.text).toBe(
      `kf.c:7:19: error: 'x' undeclared <first use> & "more"\n` +
        'make exited 2 (bad return status for module build on kernel 6.12.117+deb13-amd64 (x86_64))',
    );
    const out = failed.children[1]!.text.split('\n');
    expect(out).toHaveLength(100);
    // The hostile text ends in CRLF + 'next': that makes the last two of the 100 lines.
    expect(out[0]).toBe('line 53');
    expect(out[98]).toBe('error: </system-out> a "quoted" <tag> & \'apos\' ]]>    tab\there\r');
    expect(out[99]).toBe('next');

    expect(timeout!.children.map((c) => [c.name, c.attrs.type, c.attrs.message])).toEqual([
      ['failure', 'timeout', 'build exceeded 1800 s'],
    ]);
    const oomFailure = oom!.children[0]!;
    expect(oomFailure.attrs.type).toBe('oom');
    // Invalid XML characters are gone; tab, CR and LF survive in attributes as character references.
    expect(oomFailure.attrs.message).toBe('a "quoted" <tag> & \'apos\' ]]>    tab\there\r\nnext');
    expect(skipped!.children).toEqual([
      {
        name: 'skipped',
        attrs: { message: 'BUILD_EXCLUSIVE_KERNEL="^6\\.12" does not match 6.1.0-55-amd64' },
        children: [],
        text: '',
      },
    ]);
    expect(expected!.children[0]).toMatchObject({
      name: 'skipped',
      attrs: { message: 'expected failure: upstream API change (#12)' },
    });
    expect(cached!.children).toEqual([]);
    expect(xml).toContain('<testcase classname="debian.bookworm" name="debian/bookworm/6.1.0-54-amd64" time="0.040"/>');
    expect(notRun!.children[0]).toMatchObject({ name: 'skipped' });
  });

  it('is deterministic', async () => {
    expect(await renderJunit(sample, logs)).toBe(await renderJunit(sample, logs));
  });

  it('a failure with neither firstError nor error says the status', async () => {
    const xml = await renderJunit(report([result('trixie', '6.12.1-amd64', 'failed')]), logs);
    expect(parseXml(xml).children[0]!.children[0]!.children[0]!.attrs).toEqual({ message: 'failed', type: 'failed' });
  });

  it('escaping helpers', () => {
    expect(text('a<b>&c\x00\x07d\r')).toBe('a&lt;b&gt;&amp;cd&#13;');
    expect(attr('"\'\n\t')).toBe('&quot;&apos;&#10;&#9;');
    expect(text('\u{1F4A5} ok')).toBe('\u{1F4A5} ok');
    expect(lastLines('a\nb\nc\n', 2)).toBe('b\nc');
    expect(lastLines('a\nb', 5)).toBe('a\nb');
  });

  it('xmllint rejects what the escaping prevents (sanity check of the checker)', () => {
    const lint = xmllint('<a b="<">\x01</a>');
    if (lint.available) expect(lint.ok).toBe(false);
    expect(() => parseXml('<a b="<"></a>')).toThrow();
  });
});
