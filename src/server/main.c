/*
 * objmapperd: command line, configuration check, then the master process
 * (master.c), which forks everything else.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bsd/unistd.h>

#include "core/om_core.h"
#include "server/om_master.h"
#include "server/om_server.h"

#define DEFAULT_CONF "/etc/objmapper.conf"

extern char **environ;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: objmapperd [-F] [-t] [-f FILE]\n"
	    "       objmapperd -v | --version | -h | --help\n"
	    "  -f FILE  configuration file (default " DEFAULT_CONF ")\n"
	    "  -t       check the configuration, print \"ok\" or the error, and exit (0 or 1)\n"
	    "  -F       stay in the foreground and log to standard error\n"
	    "  -v       print the version and exit (also --version)\n"
	    "  -h       print this help and exit (also --help)\n"
	    "signals to the master: HUP reload, QUIT graceful stop, TERM/INT fast stop,\n"
	    "USR1 reopen the log file, USR2 binary upgrade\n");
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = DEFAULT_CONF;
	int test = 0, foreground = 0, opt;
	char err[1024];
	om_conf_t *conf;

	setproctitle_init(argc, argv, environ);
	while ((opt = getopt_long(argc, argv, "f:tFvh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			file = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'F':
			foreground = 1;
			break;
		case 'v':
			printf("%s\n", OM_SERVER_NAME);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "objmapperd: unexpected argument: %s\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (om_conf_load(file, &conf, err, sizeof(err)) != 0) {
		fprintf(stderr, "objmapperd: %s\n", err);
		return 1;
	}
	if (test) {
		/* The tiers too, as a start would find them: a reload that
		 * `objmapperd -t` passes is one a start would take. */
		int rc = om_master_check(conf, err, sizeof(err));

		om_conf_free(conf);
		if (rc != 0) {
			fprintf(stderr, "objmapperd: %s: %s\n", file, err);
			return 1;
		}
		printf("ok\n");
		return 0;
	}
	return om_master_run(file, conf, foreground);
}
