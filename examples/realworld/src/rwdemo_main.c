// SPDX-License-Identifier: GPL-2.0
/*
 * rwdemo - a "real-world style" DKMS demo module for kfarm.
 *
 * Two compilation units, build-time defines passed from dkms.conf through
 * the make command line, and a version string taken from ../VERSION.
 */
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>

#include "rwdemo.h"

#ifdef RWDEMO_X86_64
#define RWDEMO_ARCH "x86_64"
#else
#define RWDEMO_ARCH "generic"
#endif

static unsigned int events = 1;
module_param(events, uint, 0444);
MODULE_PARM_DESC(events, "Number of events to record at load time");

static int __init rwdemo_init(void)
{
	unsigned int i;

	rwdemo_stats_init();
	for (i = 0; i < events; i++)
		rwdemo_stats_event();

	pr_info("rwdemo: loaded version %s (arch %s, compat %s, %llu events)\n",
		RWDEMO_VERSION, RWDEMO_ARCH, RWDEMO_COMPAT,
		(unsigned long long)rwdemo_stats_count());
	return 0;
}

static void __exit rwdemo_exit(void)
{
	pr_info("rwdemo: unloaded\n");
}

module_init(rwdemo_init);
module_exit(rwdemo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kfarm");
MODULE_DESCRIPTION("kfarm real-world style DKMS demo module");
MODULE_VERSION(RWDEMO_VERSION);
MODULE_INFO(rwdemo_arch, RWDEMO_ARCH);
MODULE_INFO(rwdemo_compat, RWDEMO_COMPAT);
