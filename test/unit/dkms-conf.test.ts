import { describe, expect, it } from 'vitest';
import { dependenciesFirst, rewriteMake, type DkmsPlan } from '../../src/dkms/plan.js';
import { evaluateConf } from '../helpers/eval-conf.js';

const head = 'PACKAGE_NAME="foo"\nPACKAGE_VERSION="1.2"\n';
const KSRC = '/lib/modules/6.1.0-47-amd64/build';

describe('dkms.conf semantics (real bash, eval-conf.sh)', () => {
  const cases: {
    name: string;
    conf: string;
    kernelver?: string;
    arch?: string;
    files?: Record<string, string>;
    kconfig?: string;
    module?: [string, string];
    override?: string;
    expect: (plan: Awaited<ReturnType<typeof evaluateConf>>) => void;
  }[] = [
    {
      name: 'one record: BUILT_MODULE_NAME defaults to PACKAGE_NAME, default make command, rewrite',
      conf: head + 'DEST_MODULE_LOCATION[0]="/updates/dkms"\n',
      module: ['foo', '1.2'],
      expect: (p) => {
        expect(p.modules).toEqual([
          { builtName: 'foo', builtLocation: '', destName: 'foo', destLocation: '/updates/dkms', strip: true },
        ]);
        expect(p.makeCommand).toBe(`make -C ${KSRC} M=/var/lib/dkms/foo/1.2/build`);
        expect(p.buildCommand).toBe(`make -j4 KERNELRELEASE=6.1.0-47-amd64 -C ${KSRC} M=/var/lib/dkms/foo/1.2/build`);
      },
    },
    {
      name: 'PACKAGE_VERSION from $(cat VERSION), read relative to the source tree',
      conf: 'PACKAGE_NAME=foo\nPACKAGE_VERSION="$(cat VERSION)"\nDEST_MODULE_LOCATION[0]=/extra\n',
      files: { VERSION: '3.4.5\n' },
      expect: (p) => expect(p.packageVersion).toBe('3.4.5'),
    },
    {
      name: 'sourcing the kernel .config conditionally and using a CONFIG_ value',
      conf:
        head +
        'if [ -f "$kernel_source_dir/.config" ]; then . "$kernel_source_dir/.config"; fi\n' +
        'if [ "$CONFIG_FOO_BAR" = "y" ]; then MAKE[0]="make -C src WITH_FOO=1 KVER=$kernelver"; else MAKE[0]="make -C src"; fi\n' +
        'DEST_MODULE_LOCATION[0]=/updates\n',
      kconfig: 'CONFIG_FOO_BAR=y\nCONFIG_OTHER=m\n',
      expect: (p) =>
        expect(p.buildCommand).toBe('make -j4 KERNELRELEASE=6.1.0-47-amd64 -C src WITH_FOO=1 KVER=6.1.0-47-amd64'),
    },
    {
      name: 'kernel_config points at include/config/auto.conf when present',
      conf: head + 'MAKE[0]="make CFG=$kernel_config"\nDEST_MODULE_LOCATION[0]=/updates\n',
      kconfig: 'CONFIG_X=y\n',
      expect: (p) => expect(p.makeCommand).toMatch(/CFG=.*\/include\/config\/auto\.conf$/),
    },
    {
      name: '`sort -V -C` version comparison on $kernelver (older kernel)',
      conf:
        head +
        'if { echo "$kernelver"; echo 6.5; } | sort -V -C; then MAKE[0]="make OLD=1"; else MAKE[0]="make NEW=1"; fi\n' +
        'DEST_MODULE_LOCATION[0]=/extra\n',
      kernelver: '6.1.0-47-amd64',
      expect: (p) => expect(p.makeCommand).toBe('make OLD=1'),
    },
    {
      name: '`sort -V -C` version comparison on $kernelver (newer kernel)',
      conf:
        head +
        'if { echo "$kernelver"; echo 6.5; } | sort -V -C; then MAKE[0]="make OLD=1"; else MAKE[0]="make NEW=1"; fi\n' +
        'DEST_MODULE_LOCATION[0]=/extra\n',
      kernelver: '6.12.94+deb13-amd64',
      expect: (p) => expect(p.makeCommand).toBe('make NEW=1'),
    },
    {
      name: 'two records: location gets a slash, DEST_MODULE_NAME renames, no default name for record 1',
      conf:
        head +
        'BUILT_MODULE_NAME[0]=alpha\nBUILT_MODULE_LOCATION[0]=alpha\nDEST_MODULE_LOCATION[0]=/updates/dkms\n' +
        'BUILT_MODULE_NAME[1]=beta\nBUILT_MODULE_LOCATION[1]=beta/\nDEST_MODULE_NAME[1]=beta_renamed\nDEST_MODULE_LOCATION[1]=/extra\n',
      expect: (p) =>
        expect(p.modules).toEqual([
          {
            builtName: 'alpha',
            builtLocation: 'alpha/',
            destName: 'alpha',
            destLocation: '/updates/dkms',
            strip: true,
          },
          { builtName: 'beta', builtLocation: 'beta/', destName: 'beta_renamed', destLocation: '/extra', strip: true },
        ]),
    },
    {
      name: 'MAKE_MATCH: the last matching MAKE[i] wins',
      conf:
        head +
        'MAKE[0]="make A"\nMAKE[1]="make B"\nMAKE_MATCH[1]="^6\\."\n' +
        'MAKE[2]="make C"\nMAKE_MATCH[2]="^6\\.1\\."\nMAKE[3]="make D"\nMAKE_MATCH[3]="^5\\."\n' +
        'DEST_MODULE_LOCATION[0]=/extra\n',
      kernelver: '6.1.0-47-amd64',
      expect: (p) => expect(p.makeCommand).toBe('make C'),
    },
    {
      name: 'MAKE_MATCH: MAKE[0] is the fallback when nothing else matches',
      conf: head + 'MAKE[0]="make A"\nMAKE[1]="make B"\nMAKE_MATCH[1]="^6\\.12\\."\nDEST_MODULE_LOCATION[0]=/extra\n',
      kernelver: '6.1.0-47-amd64',
      expect: (p) => expect(p.makeCommand).toBe('make A'),
    },
    {
      name: 'MAKE_MATCH[0] set: MAKE[0] applies only when it matches, else the default command',
      conf: head + 'MAKE[0]="make A"\nMAKE_MATCH[0]="^5\\."\nDEST_MODULE_LOCATION[0]=/extra\n',
      module: ['foo', '1.2'],
      expect: (p) => expect(p.makeCommand).toBe(`make -C ${KSRC} M=/var/lib/dkms/foo/1.2/build`),
    },
    {
      name: "a quoted 'make' is not rewritten",
      conf: head + 'MAKE[0]="\'make\' -C src"\nDEST_MODULE_LOCATION[0]=/extra\n',
      expect: (p) => expect(p.buildCommand).toBe("'make' -C src"),
    },
    {
      name: 'a command not starting with make is left alone',
      conf: head + 'MAKE[0]="./build.sh $kernelver"\nDEST_MODULE_LOCATION[0]=/extra\n',
      expect: (p) => expect(p.buildCommand).toBe('./build.sh 6.1.0-47-amd64'),
    },
    {
      name: 'PATCH / PATCH_MATCH: matching and unconditional patches in array order',
      conf:
        head +
        'PATCH[0]="a.patch"\nPATCH_MATCH[0]="^6\\.12"\nPATCH[1]="b.patch"\n' +
        'PATCH[2]="c.patch"\nPATCH_MATCH[2]="^6\\.1\\."\nDEST_MODULE_LOCATION[0]=/extra\n',
      kernelver: '6.1.0-47-amd64',
      expect: (p) => expect(p.patches).toEqual(['b.patch', 'c.patch']),
    },
    {
      name: 'STRIP: STRIP[0] is the default for the other records',
      conf:
        head +
        'STRIP[0]=no\nBUILT_MODULE_NAME[0]=a\nDEST_MODULE_LOCATION[0]=/extra\nBUILT_MODULE_NAME[1]=b\nDEST_MODULE_LOCATION[1]=/extra\n' +
        'BUILT_MODULE_NAME[2]=c\nDEST_MODULE_LOCATION[2]=/extra\nSTRIP[2]=Yes\n',
      expect: (p) => expect(p.modules.map((m) => m.strip)).toEqual([false, false, true]),
    },
    {
      name: 'PRE_BUILD / POST_BUILD / BUILD_DEPENDS are kept',
      conf:
        head +
        'PRE_BUILD="scripts/pre.sh $kernelver"\nPOST_BUILD=post.sh\nBUILD_DEPENDS="bar baz"\nDEST_MODULE_LOCATION[0]=/extra\n',
      expect: (p) => {
        expect(p.preBuild).toBe('scripts/pre.sh 6.1.0-47-amd64');
        expect(p.postBuild).toBe('post.sh');
        expect(p.buildDepends).toEqual(['bar', 'baz']);
      },
    },
    {
      name: 'BUILD_EXCLUSIVE_KERNEL regex excludes a non-matching kernel',
      conf: head + 'BUILD_EXCLUSIVE_KERNEL="^6\\.12\\."\nDEST_MODULE_LOCATION[0]=/extra\n',
      kernelver: '6.1.0-47-amd64',
      expect: (p) => expect(p.excluded).toMatch(/BUILD_EXCLUSIVE_KERNEL/),
    },
    {
      name: 'BUILD_EXCLUSIVE_KERNEL regex keeps a matching kernel',
      conf: head + 'BUILD_EXCLUSIVE_KERNEL="^6\\.12\\."\nDEST_MODULE_LOCATION[0]=/extra\n',
      kernelver: '6.12.94+deb13-amd64',
      expect: (p) => expect(p.excluded).toBeUndefined(),
    },
    {
      name: 'BUILD_EXCLUSIVE_KERNEL_MIN compares versions, not strings (6.12 >= 6.5)',
      conf: head + 'BUILD_EXCLUSIVE_KERNEL_MIN="6.5"\nDEST_MODULE_LOCATION[0]=/extra\n',
      kernelver: '6.12.94+deb13-amd64',
      expect: (p) => expect(p.excluded).toBeUndefined(),
    },
    {
      name: 'BUILD_EXCLUSIVE_KERNEL_MIN excludes an older kernel',
      conf: head + 'BUILD_EXCLUSIVE_KERNEL_MIN="6.5"\nDEST_MODULE_LOCATION[0]=/extra\n',
      kernelver: '6.1.0-47-amd64',
      expect: (p) => expect(p.excluded).toMatch(/older than BUILD_EXCLUSIVE_KERNEL_MIN/),
    },
    {
      name: 'BUILD_EXCLUSIVE_KERNEL_MAX excludes a newer kernel',
      conf: head + 'BUILD_EXCLUSIVE_KERNEL_MAX="6.6"\nDEST_MODULE_LOCATION[0]=/extra\n',
      kernelver: '6.12.94+deb13-amd64',
      expect: (p) => expect(p.excluded).toMatch(/newer than BUILD_EXCLUSIVE_KERNEL_MAX/),
    },
    {
      name: 'BUILD_EXCLUSIVE_ARCH',
      conf: head + 'BUILD_EXCLUSIVE_ARCH="^(aarch64|arm64)$"\nDEST_MODULE_LOCATION[0]=/extra\n',
      expect: (p) => expect(p.excluded).toMatch(/BUILD_EXCLUSIVE_ARCH/),
    },
    {
      name: 'BUILD_EXCLUSIVE_CONFIG: required option missing, forbidden option present',
      conf:
        head + 'BUILD_EXCLUSIVE_CONFIG="CONFIG_NEEDED !CONFIG_BANNED CONFIG_HAVE"\nDEST_MODULE_LOCATION[0]=/extra\n',
      kconfig: 'CONFIG_BANNED=m\nCONFIG_HAVE=y\n',
      expect: (p) =>
        expect(p.excluded).toBe(
          'BUILD_EXCLUSIVE_CONFIG: the kernel lacks CONFIG_NEEDED; BUILD_EXCLUSIVE_CONFIG: the kernel has CONFIG_BANNED set',
        ),
    },
    {
      name: 'BUILD_EXCLUSIVE_CONFIG satisfied',
      conf: head + 'BUILD_EXCLUSIVE_CONFIG="CONFIG_HAVE !CONFIG_ABSENT"\nDEST_MODULE_LOCATION[0]=/extra\n',
      kconfig: 'CONFIG_HAVE=m\n# CONFIG_ABSENT is not set\n',
      expect: (p) => expect(p.excluded).toBeUndefined(),
    },
    {
      name: 'CRLF line endings are stripped',
      conf: 'PACKAGE_NAME="foo"\r\nPACKAGE_VERSION="1.0"\r\nBUILT_MODULE_NAME[0]="foo"\r\nDEST_MODULE_LOCATION[0]="/updates/dkms"\r\n',
      expect: (p) => {
        expect(p.packageVersion).toBe('1.0');
        expect(p.modules[0]?.destLocation).toBe('/updates/dkms');
      },
    },
    {
      name: '$module and $module_version are visible on the build pass',
      conf:
        head +
        'MAKE[0]="make -C $kernel_source_dir M=$dkms_tree/$module/$module_version/build"\nDEST_MODULE_LOCATION[0]=/extra\n',
      module: ['foo', '1.2'],
      expect: (p) =>
        expect(p.makeCommand).toMatch(
          /^make -C \S+\/lib\/modules\/6\.1\.0-47-amd64\/build M=\/var\/lib\/dkms\/foo\/1\.2\/build$/,
        ),
    },
    {
      name: 'without an explicit module, a first reading supplies $module/$module_version (dkms add, then build)',
      conf:
        'PACKAGE_NAME="auto"\nPACKAGE_VERSION="$(cat VERSION)"\n' +
        'MAKE[0]="make M=$dkms_tree/$module/$module_version/build"\nDEST_MODULE_LOCATION[0]=/extra\n',
      files: { VERSION: '9.8\n' },
      expect: (p) => expect(p.makeCommand).toBe('make M=/var/lib/dkms/auto/9.8/build'),
    },
    {
      name: 'output of the dkms.conf itself does not corrupt the evaluation',
      conf: 'echo "hello from dkms.conf"\nprintf "\\0V\\0x\\0"\n' + head + 'DEST_MODULE_LOCATION[0]=/extra\n',
      expect: (p) => expect(p.packageName).toBe('foo'),
    },
    {
      name: 'clang-built kernels get CC=clang like DKMS does',
      conf: head + 'DEST_MODULE_LOCATION[0]=/extra\n',
      kconfig: 'CONFIG_CC_IS_CLANG=y\nCONFIG_LD_IS_LLD=y\n',
      module: ['foo', '1.2'],
      expect: (p) => expect(p.makeCommand).toMatch(/ CC=clang LD=ld\.lld$/),
    },
    // DKMS's safe_source prints each value unquoted and sources that output again: the cases below are its quirks.
    {
      name: "zfs-dkms's multi-line PRE_BUILD becomes one line, as DKMS reads it (word-split, single spaces)",
      conf:
        'PACKAGE_NAME="zfs"\nPACKAGE_VERSION="2.3.9"\nBUILT_MODULE_NAME[0]="zfs"\nDEST_MODULE_LOCATION[0]="/extra"\n' +
        'PRE_BUILD="configure\n  --disable-dependency-tracking\n  --prefix=/usr\n  --with-config=kernel\n' +
        '  --with-linux-obj="${kernel_source_dir}"\n  $(\n    [[ -n \\"${CROSS_COMPILE}\\" ]] && \\\n' +
        '    {\n      echo --host=\\"${CROSS_COMPILE%-}\\"\n    }\n  )\n"\n' +
        'POST_BUILD="scripts/dkms.postbuild\n  -n ${PACKAGE_NAME}\n  -v ${PACKAGE_VERSION}\n  -k ${kernelver}\n"\n',
      expect: (p) => {
        // zfs's own `[[ -n \"${CROSS_COMPILE}\" ]]` tests a string of two quotes, so real dkms passes an empty --host= too.
        expect(p.preBuild).toMatch(
          /^configure --disable-dependency-tracking --prefix=\/usr --with-config=kernel --with-linux-obj=\S+\/build --host= $/,
        );
        // A value ending in blanks keeps one (the closing quote becomes a word of its own).
        expect(p.postBuild).toBe('scripts/dkms.postbuild -n zfs -v 2.3.9 -k 6.1.0-47-amd64 ');
      },
    },
    {
      name: 'runs of blanks and tabs in MAKE collapse to one space',
      conf: head + 'MAKE[0]="make  -C   src\tKVER=$kernelver"\nDEST_MODULE_LOCATION[0]=/extra\n',
      expect: (p) => expect(p.makeCommand).toBe('make -C src KVER=6.1.0-47-amd64'),
    },
    {
      name: "a single-quoted $kernelver is expanded by DKMS's second reading",
      conf: head + "MAKE[0]='make KVER=$kernelver'\nDEST_MODULE_LOCATION[0]=/extra\n",
      expect: (p) => expect(p.makeCommand).toBe('make KVER=6.1.0-47-amd64'),
    },
    {
      name: 'a variable dkms.conf defines for itself is gone by the second reading',
      conf: head + "flags=-DX\nMAKE[0]='make EXTRA=$flags'\nDEST_MODULE_LOCATION[0]=/extra\n",
      expect: (p) => expect(p.makeCommand).toBe('make EXTRA='),
    },
    {
      name: 'escaped double quotes inside a value end the quoted string when DKMS reads it again',
      conf: head + 'MAKE[0]="make CFLAGS=\\"-DA\\" V=1"\nDEST_MODULE_LOCATION[0]=/extra\n',
      expect: (p) => expect(p.makeCommand).toBe('make CFLAGS=-DA V=1'),
    },
    {
      name: '--dkms-conf-override is read after dkms.conf and sees its values, as /etc/dkms/<module>.conf',
      conf: head + 'MAKE[0]="make A=1"\nPRE_BUILD="pre.sh"\nDEST_MODULE_LOCATION[0]=/extra\n',
      override: 'MAKE[0]="${MAKE[0]} B=2"\nPOST_BUILD="post.sh $kernelver"\n',
      expect: (p) => {
        expect(p.makeCommand).toBe('make A=1 B=2');
        expect(p.preBuild).toBe('pre.sh');
        expect(p.postBuild).toBe('post.sh 6.1.0-47-amd64');
      },
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const plan = await evaluateConf({
        conf: c.conf,
        ...(c.kernelver ? { kernelver: c.kernelver } : {}),
        ...(c.arch ? { arch: c.arch } : {}),
        ...(c.files ? { files: c.files } : {}),
        ...(c.kconfig !== undefined ? { kconfig: c.kconfig } : {}),
        ...(c.module ? { module: c.module[0], moduleVersion: c.module[1] } : {}),
        ...(c.override !== undefined ? { override: c.override } : {}),
      });
      c.expect(plan);
    });
  }
});

describe('bad dkms.conf: one line naming the file and the problem', () => {
  const bad: [string, string, RegExp][] = [
    [
      'no PACKAGE_NAME',
      'PACKAGE_VERSION=1\nDEST_MODULE_LOCATION[0]=/extra\n',
      /^dkms\.conf: no 'PACKAGE_NAME' directive$/,
    ],
    [
      'no PACKAGE_VERSION',
      'PACKAGE_NAME=x\nDEST_MODULE_LOCATION[0]=/extra\n',
      /^dkms\.conf: no 'PACKAGE_VERSION' directive$/,
    ],
    [
      'no DEST_MODULE_LOCATION',
      'PACKAGE_NAME=x\nPACKAGE_VERSION=1\nBUILT_MODULE_NAME[0]=x\n',
      /^dkms\.conf: no 'DEST_MODULE_LOCATION' directive/,
    ],
    [
      'DEST_MODULE_LOCATION missing for one record',
      head + 'BUILT_MODULE_NAME[0]=a\nDEST_MODULE_LOCATION[0]=/extra\nBUILT_MODULE_NAME[1]=b\n',
      /record #1/,
    ],
    [
      'bad location prefix',
      head + 'DEST_MODULE_LOCATION[0]=/opt/foo\n',
      /DEST_MODULE_LOCATION\[0\]' \("\/opt\/foo"\) does not begin with '\/kernel', '\/updates' or '\/extra'/,
    ],
    [
      'BUILT_MODULE_NAME ending in .ko',
      head + 'BUILT_MODULE_NAME[0]=foo.ko\nDEST_MODULE_LOCATION[0]=/extra\n',
      /'BUILT_MODULE_NAME\[0\]' \("foo\.ko"\) ends in '\.o' or '\.ko'/,
    ],
    [
      'DEST_MODULE_NAME ending in .o',
      head + 'DEST_MODULE_NAME[0]=foo.o\nDEST_MODULE_LOCATION[0]=/extra\n',
      /'DEST_MODULE_NAME\[0\]'/,
    ],
    [
      'two records without BUILT_MODULE_NAME',
      head + 'DEST_MODULE_LOCATION[0]=/extra\nDEST_MODULE_LOCATION[1]=/extra\n',
      /no 'BUILT_MODULE_NAME' directive for record #0/,
    ],
    [
      'a PATCH name with ..',
      head + 'PATCH[0]=../../etc/x\nDEST_MODULE_LOCATION[0]=/extra\n',
      /'PATCH' entry "..\/..\/etc\/x" contains '..'/,
    ],
    [
      'BUILT_MODULE_LOCATION escaping the build dir',
      head + 'BUILT_MODULE_LOCATION[0]=../x\nDEST_MODULE_LOCATION[0]=/extra\n',
      /must stay inside the build directory/,
    ],
  ];
  for (const [name, conf, message] of bad) {
    it(name, async () => {
      const error = await evaluateConf({ conf }).then(
        () => undefined,
        (e: Error & { code?: string; exitCode?: number }) => e,
      );
      expect(error?.message).toMatch(message);
      expect(error?.message).not.toContain('\n');
      expect(error?.code).toBe('KFARM_CONFIG_INVALID');
      expect(error?.exitCode).toBe(2);
    });
  }

  it('a bash syntax error is a config error naming dkms.conf and the line', async () => {
    await expect(evaluateConf({ conf: 'PACKAGE_NAME=x\nif [ 1 ]; then\nPACKAGE_VERSION=1\n' })).rejects.toThrow(
      /^dkms\.conf: line \d+: syntax error/,
    );
  });
});

describe("a package's tree: DKMS builds the version its /usr/src/<module>-<version> directory names", () => {
  // mstflint-dkms 4.31.0+1-4 ships this placeholder; trixie's real dkms builds it as mstflint/4.31.0+1.
  const mstflint =
    'PACKAGE_NAME="mstflint"\nPACKAGE_VERSION="#MODULES_VERSION#"\nBUILT_MODULE_NAME[0]="mstflint_access"\n' +
    'DEST_MODULE_LOCATION[0]="/updates/dkms"\n';

  it('takes the version from the directory name, whatever PACKAGE_VERSION says', async () => {
    const plan = await evaluateConf({ conf: mstflint, packageDir: 'mstflint-4.31.0+1' });
    expect([plan.packageName, plan.packageVersion]).toEqual(['mstflint', '4.31.0+1']);
    // And dkms.conf sees it as $module_version, as under `dkms build -m mstflint -v 4.31.0+1`.
    const seen = await evaluateConf({
      conf: mstflint + 'MAKE[0]="make V=$module_version"\n',
      packageDir: 'mstflint-4.31.0+1',
    });
    expect(seen.makeCommand).toBe('make V=4.31.0+1');
  });

  it("keeps PACKAGE_VERSION for a user's tree, and for a directory not named after the package", async () => {
    await expect(evaluateConf({ conf: mstflint })).rejects.toThrow(/'PACKAGE_VERSION' \("#MODULES_VERSION#"\)/);
    const plan = await evaluateConf({ conf: head + 'DEST_MODULE_LOCATION[0]=/extra\n', packageDir: 'other-9' });
    expect(plan.packageVersion).toBe('1.2');
  });

  it('still wants PACKAGE_VERSION set, as read_conf does', async () => {
    const conf = 'PACKAGE_NAME="foo"\nDEST_MODULE_LOCATION[0]=/extra\n';
    await expect(evaluateConf({ conf, packageDir: 'foo-1.0' })).rejects.toThrow(/no 'PACKAGE_VERSION' directive/);
  });
});

describe('rewriteMake', () => {
  it('rewrites only a literal leading "make", as bash ${var/#make/...} does', () => {
    const ctx = { parallelJobs: 2, kernelver: '6.1.0-1-amd64' };
    expect(rewriteMake('make -C x', ctx)).toBe('make -j2 KERNELRELEASE=6.1.0-1-amd64 -C x');
    expect(rewriteMake('makefoo', ctx)).toBe('make -j2 KERNELRELEASE=6.1.0-1-amd64foo');
    expect(rewriteMake(' make', ctx)).toBe(' make');
    expect(rewriteMake('/usr/bin/make', ctx)).toBe('/usr/bin/make');
  });
});

describe('dependenciesFirst (the order --with-module packages build in)', () => {
  const item = (packageName: string, ...buildDepends: string[]) => ({
    plan: { packageName, buildDepends } as unknown as DkmsPlan,
  });
  const names = (items: Array<{ plan: DkmsPlan }>) => items.map((i) => i.plan.packageName);

  it('puts each package after the packages its BUILD_DEPENDS name, otherwise in the order given', () => {
    const top = item('nvidia-fs', 'nvidia-current');
    const nvidia = item('nvidia-current');
    const other = item('unrelated');
    expect(names(dependenciesFirst([top, other, nvidia]))).toEqual(['nvidia-current', 'nvidia-fs', 'unrelated']);
    expect(names(dependenciesFirst([other, nvidia, top]))).toEqual(['unrelated', 'nvidia-current', 'nvidia-fs']);
  });

  it('follows chains, ignores names not given, and ends on a cycle instead of looping', () => {
    const a = item('a', 'b', 'missing');
    const b = item('b', 'c');
    const c = item('c');
    expect(names(dependenciesFirst([a, b, c]))).toEqual(['c', 'b', 'a']);
    const x = item('x', 'y');
    const y = item('y', 'x');
    expect(names(dependenciesFirst([x, y])).sort()).toEqual(['x', 'y']);
  });
});
