import { describe, expect, it } from 'vitest';
import { loadOrder, splitDepends, type PackageModule } from '../../src/verify/deps.js';
import { assignParams, parseVerifyParams } from '../../src/verify/params.js';

/** A slice of a real kernel's dependency graph (6.12 amd64). */
const kernel: Record<string, string[]> = {
  mc: [],
  videodev: ['mc'],
  v4l2_async: ['videodev'],
  crc7: [],
  snd: ['soundcore'],
  soundcore: [],
};
const lookup = (name: string) => kernel[name];
const mod = (name: string, depends: string[] = [], file = `${name}.ko`): PackageModule => ({ name, file, depends });

describe('loadOrder', () => {
  it('loads kernel dependencies recursively, each after its own', () => {
    expect(loadOrder([mod('kf_kdep', ['v4l2_async'])], lookup)).toEqual({
      order: [
        { name: 'mc', source: 'kernel' },
        { name: 'videodev', source: 'kernel' },
        { name: 'v4l2_async', source: 'kernel' },
        { name: 'kf_kdep', source: 'package' },
      ],
      missing: [],
    });
  });

  it('orders modules of one package by their depends=, whatever order dkms.conf lists them in', () => {
    const plan = loadOrder([mod('kf_beta', ['kf_alpha'], 'kf_beta_renamed.ko'), mod('kf_alpha')], lookup);
    expect(plan.order.map((s) => s.name)).toEqual(['kf_alpha', 'kf_beta']);
  });

  it('loads a shared dependency once and keeps the package order otherwise', () => {
    const plan = loadOrder([mod('a', ['videodev']), mod('b', ['mc', 'videodev']), mod('c')], lookup);
    expect(plan.order.map((s) => `${s.source}:${s.name}`)).toEqual([
      'kernel:mc',
      'kernel:videodev',
      'package:a',
      'package:b',
      'package:c',
    ]);
  });

  it('lets a package module shadow the kernel module of the same name (DKMS /updates)', () => {
    const plan = loadOrder([mod('videodev', ['mc']), mod('user', ['videodev'])], lookup);
    expect(plan.order).toEqual([
      { name: 'mc', source: 'kernel' },
      { name: 'videodev', source: 'package' },
      { name: 'user', source: 'package' },
    ]);
  });

  it('treats - and _ alike, as the kernel does', () => {
    expect(loadOrder([mod('kf-x', ['v4l2-async'])], lookup).order.map((s) => s.name)).toEqual([
      'mc',
      'videodev',
      'v4l2_async',
      'kf_x',
    ]);
  });

  it('reports dependencies nobody provides and still plans the rest', () => {
    const plan = loadOrder([mod('kf', ['crc7', 'not_here']), mod('kf2', ['not_here'])], lookup);
    expect(plan.order.map((s) => s.name)).toEqual(['crc7', 'kf', 'kf2']);
    expect(plan.missing).toEqual([
      ['kf', 'not_here'],
      ['kf2', 'not_here'],
    ]);
  });

  it('rejects a dependency cycle, naming it', () => {
    expect(() => loadOrder([mod('a', ['b']), mod('b', ['c']), mod('c', ['a'])], lookup)).toThrow(
      'module dependency cycle: a -> b -> c -> a',
    );
  });

  it('splits modinfo depends= values', () => {
    expect(splitDepends(['mc,videodev'])).toEqual(['mc', 'videodev']);
    expect(splitDepends([''])).toEqual([]);
    expect(splitDepends(undefined)).toEqual([]);
  });
});

describe('--verify-params', () => {
  it('parses name=value, module.name=value, bare booleans and quoted values', () => {
    expect(parseVerifyParams(' whom=kfarm  kf_beta.level=3 debug msg="hello world" kf-alpha.x ')).toEqual([
      { arg: 'whom=kfarm', word: 'whom=kfarm' },
      { module: 'kf_beta', arg: 'level=3', word: 'kf_beta.level=3' },
      { arg: 'debug', word: 'debug' },
      { arg: 'msg="hello world"', word: 'msg="hello world"' },
      { module: 'kf_alpha', arg: 'x', word: 'kf-alpha.x' },
    ]);
    expect(parseVerifyParams(undefined)).toEqual([]);
    expect(parseVerifyParams('')).toEqual([]);
    expect(parseVerifyParams('path=a.b.c')).toEqual([{ arg: 'path=a.b.c', word: 'path=a.b.c' }]);
  });

  it('rejects what insmod could not take, naming the flag', () => {
    expect(() => parseVerifyParams('=x')).toThrow('--verify-params: "=x": expected name=value');
    expect(() => parseVerifyParams('a b$c=1')).toThrow('--verify-params: "b$c=1"');
    expect(() => parseVerifyParams('m.=1')).toThrow('"m.=1"');
    expect(() => parseVerifyParams('msg="open')).toThrow('--verify-params: unterminated double quote');
    expect(() => parseVerifyParams('x')).not.toThrow();
  });

  it('gives unprefixed parameters to every package module and prefixed ones to their module', () => {
    const params = parseVerifyParams('whom=kfarm kf_beta.level=3 videodev.debug=1');
    const assigned = assignParams(params, ['kf_alpha', 'kf_beta'], ['mc', 'videodev']);
    expect(Object.fromEntries(assigned)).toEqual({
      kf_alpha: ['whom=kfarm'],
      kf_beta: ['whom=kfarm', 'level=3'],
      videodev: ['debug=1'],
    });
  });

  it('rejects a prefix naming no module of the boot', () => {
    expect(() => assignParams(parseVerifyParams('kf_gamma.x=1'), ['kf_alpha', 'kf_beta'], ['mc'])).toThrow(
      '--verify-params: "kf_gamma.x=1": no module kf_gamma among the package\'s modules (kf_alpha, kf_beta) or their dependencies (mc)',
    );
  });
});
