// SPDX-License-Identifier: GPL-2.0
/*
 * hello - the kfarm example DKMS module.
 *
 * Prints a line when loaded and when unloaded. Uses only APIs that are
 * stable across the kernels kfarm targets (6.1 and 6.12).
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>

static char *whom = "world";
module_param(whom, charp, 0444);
MODULE_PARM_DESC(whom, "Who to greet when the module is loaded");

static int __init hello_init(void)
{
	pr_info("hello: loaded\n");
	pr_info("hello: hello, %s\n", whom);
	return 0;
}

static void __exit hello_exit(void)
{
	pr_info("hello: unloaded\n");
}

module_init(hello_init);
module_exit(hello_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kfarm");
MODULE_DESCRIPTION("kfarm example module: prints on load and unload");
MODULE_VERSION("1.0");
