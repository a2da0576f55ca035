import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Writes a synthetic but realistic DKMS package: `files` C files of `functions` functions each (state
 * machines, table walks, string formatting, locking), one module. A single file of ~40 functions is a
 * typical single-file driver (~2,500 lines); 60 files is a large multi-file driver.
 */
export async function generateModule(
  dir: string,
  options: { name: string; files: number; functions: number },
): Promise<void> {
  const { name, files, functions } = options;
  await mkdir(dir, { recursive: true });
  const objects: string[] = [];
  for (let f = 0; f < files; f++) {
    const unit = `${name}_part${f}`;
    objects.push(`${unit}.o`);
    const body: string[] = [
      '// SPDX-License-Identifier: GPL-2.0',
      '#include <linux/kernel.h>',
      '#include <linux/module.h>',
      '#include <linux/slab.h>',
      '#include <linux/spinlock.h>',
      '#include <linux/string.h>',
      '#include <linux/list.h>',
      `#include "${name}.h"`,
      '',
      `static DEFINE_SPINLOCK(${unit}_lock);`,
      `struct ${unit}_entry { struct list_head node; u32 key; u64 value; char label[32]; };`,
      `static LIST_HEAD(${unit}_entries);`,
      '',
    ];
    for (let i = 0; i < functions; i++) {
      const fn = `${unit}_op${i}`;
      body.push(
        `static noinline u64 ${fn}(const u8 *buf, size_t len, u32 seed)`,
        '{',
        '\tu64 acc = seed;',
        '\tsize_t i;',
        `\tstruct ${unit}_entry *e;`,
        '\tunsigned long flags;',
        '',
        '\tfor (i = 0; i < len; i++) {',
        `\t\tswitch ((buf[i] + ${i}) & 7) {`,
        '\t\tcase 0: acc = (acc << 5) ^ (acc >> 3) ^ buf[i]; break;',
        `\t\tcase 1: acc += (u64)buf[i] * ${(i * 2654435761) % 1000003}ULL; break;`,
        '\t\tcase 2: acc ^= ror64(acc, buf[i] & 63); break;',
        '\t\tcase 3: acc = acc * 31 + i; break;',
        `\t\tcase 4: acc -= ${i + 7} * (u64)len; break;`,
        '\t\tcase 5: acc |= BIT_ULL(buf[i] & 63); break;',
        '\t\tcase 6: acc &= ~BIT_ULL((buf[i] >> 2) & 63); break;',
        '\t\tdefault: acc = rol64(acc, 7) + seed; break;',
        '\t\t}',
        '\t}',
        `\tspin_lock_irqsave(&${unit}_lock, flags);`,
        `\tlist_for_each_entry(e, &${unit}_entries, node) {`,
        '\t\tif (e->key == (u32)acc) {',
        '\t\t\te->value += acc;',
        `\t\t\tsnprintf(e->label, sizeof(e->label), "${fn}:%llu", (unsigned long long)e->value);`,
        '\t\t}',
        '\t}',
        `\tspin_unlock_irqrestore(&${unit}_lock, flags);`,
        '\treturn acc;',
        '}',
        '',
      );
    }
    body.push(`u64 ${unit}_run(const u8 *buf, size_t len)`, '{', '\tu64 acc = 0;', '');
    for (let i = 0; i < functions; i++) body.push(`\tacc += ${unit}_op${i}(buf, len, (u32)acc + ${i});`);
    body.push('\treturn acc;', '}', '');
    await writeFile(join(dir, `${unit}.c`), body.join('\n'));
  }
  const header = [`#ifndef ${name.toUpperCase()}_H`, `#define ${name.toUpperCase()}_H`, '#include <linux/types.h>'];
  for (let f = 0; f < files; f++) header.push(`u64 ${name}_part${f}_run(const u8 *buf, size_t len);`);
  header.push('#endif', '');
  await writeFile(join(dir, `${name}.h`), header.join('\n'));
  const main = [
    '// SPDX-License-Identifier: GPL-2.0',
    '#include <linux/module.h>',
    `#include "${name}.h"`,
    '',
    `static int __init ${name}_init(void)`,
    '{',
    '\tstatic const u8 probe[] = "kfarm";',
    '\tu64 acc = 0;',
    ...Array.from({ length: files }, (_, f) => `\tacc += ${name}_part${f}_run(probe, sizeof(probe));`),
    `\tpr_info("${name}: %llu\\n", (unsigned long long)acc);`,
    '\treturn 0;',
    '}',
    `static void __exit ${name}_exit(void) {}`,
    `module_init(${name}_init);`,
    `module_exit(${name}_exit);`,
    'MODULE_LICENSE("GPL");',
    `MODULE_DESCRIPTION("kfarm benchmark module ${name}");`,
    '',
  ];
  await writeFile(join(dir, `${name}_main.c`), main.join('\n'));
  await writeFile(join(dir, 'Kbuild'), `obj-m := ${name}.o\n${name}-y := ${name}_main.o ${objects.join(' ')}\n`);
  await writeFile(
    join(dir, 'dkms.conf'),
    `PACKAGE_NAME="${name}"\nPACKAGE_VERSION="1.0"\nBUILT_MODULE_NAME[0]="${name}"\n` +
      'DEST_MODULE_LOCATION[0]="/updates/dkms"\nAUTOINSTALL="yes"\n',
  );
}
