// SPDX-License-Identifier: GPL-2.0
/* rwdemo_stats.c - second compilation unit of the rwdemo module. */
#include <linux/atomic.h>

#include "rwdemo.h"

static atomic64_t rwdemo_events;

void rwdemo_stats_init(void)
{
	atomic64_set(&rwdemo_events, 0);
}

void rwdemo_stats_event(void)
{
	atomic64_inc(&rwdemo_events);
}

u64 rwdemo_stats_count(void)
{
	return (u64)atomic64_read(&rwdemo_events);
}
