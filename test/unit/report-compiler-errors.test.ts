import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  compilerDiagnostics,
  diagnosticKey,
  firstCompilerError,
  formatDiagnostic,
  formatDiagnosticLine,
  normalizedMessage,
  stripAnsi,
} from '../../src/dkms/compiler-errors.js';

// Real make.logs from `kfarm build` of small broken modules: gcc12 = bookworm 6.1.0-56-amd64 (gcc 12),
// gcc14 = trixie 6.12.117+deb13-amd64 (gcc 14).
const fixture = (name: string) => readFileSync(new URL(`../fixtures/report/${name}.make.log`, import.meta.url), 'utf8');
const dkms = (module: string, version = '1.0') => ({ buildDir: `/var/lib/dkms/${module}/${version}/build` });

describe('compilerDiagnostics on real gcc 12 / gcc 14 make.logs', () => {
  it('gcc14: an error gcc places in a kernel header through a macro points at the macro use in the module', () => {
    // test/fixtures/compatbreak on 6.12.118+deb13-amd64: class_create(THIS_MODULE, …) after 6.4 dropped the owner.
    const all = compilerDiagnostics(fixture('gcc14-compatbreak'), dkms('kf_compatbreak'));
    expect(all).toEqual([
      {
        file: 'compatbreak.c',
        line: 5,
        column: 66,
        message: "passing argument 1 of 'class_create' from incompatible pointer type [-Wincompatible-pointer-types]",
        context: '/usr/src/linux-headers-6.12.118+deb13-common/include/linux/init.h:180:22',
      },
      { file: 'compatbreak.c', line: 5, column: 53, message: "too many arguments to function 'class_create'" },
    ]);
    expect(firstCompilerError(fixture('gcc14-compatbreak'), dkms('kf_compatbreak'))).toEqual(all[0]);
  });

  for (const gcc of ['gcc12', 'gcc14']) {
    it(`${gcc}: an undeclared identifier, relative to the source tree, without the "In function" and note lines`, () => {
      const log = fixture(`${gcc}-broken`);
      expect(compilerDiagnostics(log, dkms('kf_broken'))).toEqual([
        {
          file: 'kf_broken.c',
          line: 7,
          column: 19,
          message: "'this_symbol_does_not_exist' undeclared (first use in this function)",
        },
      ]);
      expect(formatDiagnostic(firstCompilerError(log, dkms('kf_broken'))!)).toBe(
        "kf_broken.c:7:19: 'this_symbol_does_not_exist' undeclared (first use in this function)",
      );
    });

    it(`${gcc}: errors in the module's own header and -Werror errors, in order; warnings are not errors`, () => {
      const all = compilerDiagnostics(fixture(`${gcc}-hdr`), dkms('kf_hdr', '2.0'));
      expect(all.map(formatDiagnostic)).toEqual([
        "include/kf_hdr.h:5:16: 'undefined_in_header' undeclared (first use in this function)",
        "kf_hdr.c:14:9: implicit declaration of function 'setup_timer'; did you mean 'del_timer'? " +
          `[${gcc === 'gcc12' ? '-Werror=' : '-W'}implicit-function-declaration]`,
        'include/kf_hdr.h:6:1: control reaches end of non-void function [-Werror=return-type]',
      ]);
      expect(all.some((d) => d.message.includes('unused variable'))).toBe(false);
    });

    it(`${gcc}: an error inside a kernel header points at the #include in the module, the header kept as context`, () => {
      const first = firstCompilerError(fixture(`${gcc}-kheader`), dkms('kf_kheader'));
      const header =
        gcc === 'gcc12'
          ? '/usr/src/linux-headers-6.1.0-56-common/include/linux/types.h:179:8'
          : '/usr/src/linux-headers-6.12.117+deb13-common/include/linux/types.h:194:8';
      expect(first).toEqual({
        file: 'kf_kheader.c',
        line: 3,
        message: "redefinition of 'struct list_head'",
        context: header,
      });
    });

    it(`${gcc}: fatal error (missing header)`, () => {
      expect(compilerDiagnostics(fixture(`${gcc}-fatal`), dkms('kf_fatal'))).toEqual([
        { file: 'kf_fatal.c', line: 3, column: 10, message: 'linux/genhd.h: No such file or directory' },
      ]);
    });

    it(`${gcc}: modpost undefined symbol (no file or line; the text after ERROR:)`, () => {
      expect(compilerDiagnostics(fixture(`${gcc}-undef`), dkms('kf_undef'))).toEqual([
        { message: 'modpost: "kf_no_such_function" [/var/lib/dkms/kf_undef/1.0/build/kf_undef.ko] undefined!' },
      ]);
    });

    it(`${gcc}: make's "No rule to make target" as the last resort, build dir stripped`, () => {
      expect(compilerDiagnostics(fixture(`${gcc}-norule`), dkms('kf_norule'))).toEqual([
        { message: "No rule to make target 'missing.o', needed by 'kf_norule.o'" },
      ]);
    });

    it(`${gcc}: colored diagnostics with OSC 8 links (-fdiagnostics-color=always -fdiagnostics-urls=always)`, () => {
      const log = fixture(`${gcc}-color`);
      expect(log).toContain('\x1b[01;31m');
      expect(compilerDiagnostics(log, dkms('kf_broken'))).toEqual([
        {
          file: 'kf_broken.c',
          line: 7,
          column: 19,
          message: "'this_symbol_does_not_exist' undeclared (first use in this function)",
        },
      ]);
    });
  }

  it('the same error on gcc 12 and gcc 14 groups by the normalized message', () => {
    const a = compilerDiagnostics(fixture('gcc12-hdr'), dkms('kf_hdr', '2.0'))[1]!;
    const b = compilerDiagnostics(fixture('gcc14-hdr'), dkms('kf_hdr', '2.0'))[1]!;
    expect(a.message).not.toBe(b.message);
    expect(diagnosticKey(a)).toBe(diagnosticKey(b));
    expect(normalizedMessage(a.message)).toBe(
      "implicit declaration of function 'setup_timer'; did you mean 'del_timer'?",
    );
  });
});

describe('compilerDiagnostics: other shapes', () => {
  const ctx = { buildDir: '/var/lib/dkms/m/1/build/' };

  it('clang errors, CRLF line ends, duplicates removed, paths normalized', () => {
    const log = [
      "/var/lib/dkms/m/1/build/src/a.c:10:5: error: use of undeclared identifier 'x'\r",
      "/var/lib/dkms/m/1/build/./src/a.c:10:5: error: use of undeclared identifier 'x'",
      "/var/lib/dkms/m/1/build/src/a.c:12:1: warning: unused function 'f' [-Wunused-function]",
      '1 error generated.',
      '/var/lib/dkms/m/1/build/b.c:3: error: #error "no column"',
      '{standard input}: Assembler messages:',
      "/tmp/ccAbc.s:12: Error: no such instruction: `frob %eax'",
    ].join('\n');
    expect(compilerDiagnostics(log, ctx)).toEqual([
      { file: 'src/a.c', line: 10, column: 5, message: "use of undeclared identifier 'x'" },
      { file: 'b.c', line: 3, message: '#error "no column"' },
      { file: '/tmp/ccAbc.s', line: 12, message: "no such instruction: `frob %eax'" },
    ]);
  });

  it('gcc source echo lines and "In file included from" are not diagnostics', () => {
    const log = [
      'In file included from /var/lib/dkms/m/1/build/a.c:6:',
      "/var/lib/dkms/m/1/build/a.c: In function 'f':",
      '   12 |  pr_err("x.c:1:2: error: not real");',
      '      |  ^~~~~~',
    ].join('\n');
    expect(compilerDiagnostics(log, ctx)).toEqual([]);
    expect(firstCompilerError(log, ctx)).toBeUndefined();
  });

  it('driver, linker and old-style modpost errors; make errors dropped once there is a compiler error', () => {
    const log = [
      "make[2]: *** No rule to make target 'x.o'.  Stop.",
      "gcc-12: error: unrecognized command-line option '-mfoo'",
      "ld: /var/lib/dkms/m/1/build/b.o:(.bss+0x0): multiple definition of `shared'; " +
        '/var/lib/dkms/m/1/build/a.o:(.bss+0x0): first defined here',
      'ld.lld: error: undefined symbol: bar',
      "FATAL: modpost: GPL-incompatible module m.ko uses GPL-only symbol 'x'",
      'WARNING: modpost: "baz" [/var/lib/dkms/m/1/build/m.ko] undefined!',
      'make: *** [Makefile:236: __sub-make] Error 2',
    ].join('\n');
    expect(compilerDiagnostics(log, ctx).map((d) => d.message)).toEqual([
      "gcc-12: unrecognized command-line option '-mfoo'",
      "ld: b.o:(.bss+0x0): multiple definition of `shared'; a.o:(.bss+0x0): first defined here",
      'ld.lld: error: undefined symbol: bar',
      "modpost: GPL-incompatible module m.ko uses GPL-only symbol 'x'",
    ]);
  });

  it('make errors with a makefile location; propagation lines ignored', () => {
    const log = [
      '/var/lib/dkms/m/1/build/Makefile:4: *** missing separator.  Stop.',
      'make[1]: *** [/usr/src/linux-headers-6.1.0-56-common/Makefile:2065: /var/lib/dkms/m/1/build] Error 2',
      'make[1]: *** Waiting for unfinished jobs....',
    ].join('\n');
    expect(compilerDiagnostics(log, ctx)).toEqual([{ file: 'Makefile', line: 4, message: 'missing separator' }]);
  });

  it('formats: file:line:col: message and the compiler-style line', () => {
    expect(formatDiagnostic({ file: 'a.c', line: 1, column: 2, message: 'm' })).toBe('a.c:1:2: m');
    expect(formatDiagnostic({ file: 'a.c', line: 1, message: 'm' })).toBe('a.c:1: m');
    expect(formatDiagnostic({ message: 'm' })).toBe('m');
    expect(formatDiagnosticLine({ file: 'a.c', line: 1, column: 2, message: 'm' })).toBe('a.c:1:2: error: m');
    expect(stripAnsi('\x1b[01;31m\x1b[Kerror: \x1b[m\x1b[K\x1b]8;;https://x\x07-W\x1b]8;;\x07')).toBe('error: -W');
  });

  it('is linear on a large log (tens of MB) and on a huge single line', () => {
    const block = fixture('gcc14-hdr').split('\n').slice(4, 22).join('\n').replaceAll('error:', 'warning:') + '\n';
    const big = block.repeat(Math.ceil((30 * 1024 * 1024) / block.length)) + fixture('gcc14-broken');
    const started = performance.now();
    expect(firstCompilerError(big, dkms('kf_broken'))?.file).toBe('kf_broken.c');
    const all = compilerDiagnostics(big, dkms('kf_broken'));
    expect(all).toHaveLength(1);
    const longLine = `/x${'a'.repeat(5_000_000)}:1 error ${':'.repeat(1000)}\n`;
    expect(compilerDiagnostics(longLine, ctx)).toEqual([]);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('stops at max', () => {
    const log = Array.from({ length: 50 }, (_, i) => `/var/lib/dkms/m/1/build/a.c:${i + 1}:1: error: e${i}`).join('\n');
    expect(compilerDiagnostics(log, { ...ctx, max: 5 })).toHaveLength(5);
  });
});
