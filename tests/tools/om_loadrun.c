/*
 * A load for scripts (tests/check-deb's upgrade under load): CLIENTS
 * client processes of libobjmapper on SOCKET for SECONDS, each GET's bytes
 * checked (tests/lib/om_load.h), then one line of counts. Exit status 0
 * only if no request failed and every GET was whole.
 *   om_loadrun SOCKET SECONDS CLIENTS
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_load.h"

int
main(int argc, char **argv)
{
	om_load_result_t r;
	om_load_t *l;
	unsigned secs, clients;

	if (argc != 4 || (secs = (unsigned)strtoul(argv[2], NULL, 10)) == 0 ||
	    (clients = (unsigned)strtoul(argv[3], NULL, 10)) == 0) {
		fprintf(stderr, "usage: om_loadrun SOCKET SECONDS CLIENTS\n");
		return 2;
	}
	if (om_load_preload(argv[1], 16) != 0) {
		fprintf(stderr, "om_loadrun: cannot preload %s\n", argv[1]);
		return 1;
	}
	l = om_load_start(argv[1], clients, 16, 10);
	if (l == NULL)
		return 1;
	sleep(secs);
	om_load_stop(l, &r);
	printf("ops %llu gets %llu puts %llu failures %llu wrong %llu retries %llu%s%s\n",
	    (unsigned long long)r.ops, (unsigned long long)r.gets, (unsigned long long)r.puts,
	    (unsigned long long)r.failures, (unsigned long long)r.wrong, (unsigned long long)r.retries_total,
	    r.why[0] ? ": " : "", r.why);
	return r.failures == 0 && r.wrong == 0 && r.ops > 0 ? 0 : 1;
}
