/*
 * The master process's entry point (master.c), called by main.
 */
#ifndef OM_MASTER_H
#define OM_MASTER_H

#include "conf/om_conf.h"

/* Runs the daemon with a loaded configuration (which it takes over);
 * returns the process exit status. */
int om_master_run(const char *conf_path, om_conf_t *conf, int foreground);
/* What objmapperd -t checks beyond the file: the tiers' directories and
 * filesystems, as a start would find them (nothing is locked, created or
 * left). 0, or -errno with a message in err. */
int om_master_check(const om_conf_t *conf, char *err, size_t errlen);

#endif
