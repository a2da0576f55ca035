/* SPDX-License-Identifier: GPL-2.0 */
#ifndef RWDEMO_H
#define RWDEMO_H

#include <linux/types.h>

#ifndef RWDEMO_VERSION
#define RWDEMO_VERSION "unknown"
#endif

#ifndef RWDEMO_COMPAT
#define RWDEMO_COMPAT "modern"
#endif

void rwdemo_stats_init(void);
void rwdemo_stats_event(void);
u64 rwdemo_stats_count(void);

#endif /* RWDEMO_H */
