/*
 * The configuration parser (src/conf/conf.c, over inih): the input is the
 * file, written to a memfd and loaded through /proc/self/fd/N as
 * objmapperd -f would load it. Users and groups it names are looked up in
 * this machine's databases.
 *
 * Checks: a load either succeeds with a configuration inside its limits
 * (1..16 listeners of a known type, terminated strings, absolute socket
 * paths, ACLs within bounds, 1..256 workers) or fails with *out NULL and a
 * one-line message that names the file.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf/om_conf.h"
#include "fuzz.h"

static int fd = -1;
static char path[64];

static void
check_acl(const om_conf_acl_list_t *a)
{
	FZ_ASSERT(a->n <= OM_CONF_ACL_MAX, "acl n %u", a->n);
	for (unsigned i = 0; i < a->n; i++) {
		FZ_ASSERT(a->e[i].kind >= OM_ACL_ANY && a->e[i].kind <= OM_ACL_NET, "acl kind %d",
		    (int)a->e[i].kind);
		FZ_ASSERT(a->e[i].prefix <= 128, "prefix %u", a->e[i].prefix);
	}
}

static void
check_owner(const om_conf_owner_t *o)
{
	FZ_ASSERT(strnlen(o->user, sizeof(o->user)) < sizeof(o->user), "user");
	FZ_ASSERT(strnlen(o->group, sizeof(o->group)) < sizeof(o->group), "group");
}

static void
check_conf(const om_conf_t *c)
{
	FZ_ASSERT(c->nlisten >= 1 && c->nlisten <= OM_CONF_LISTEN_MAX, "nlisten %u", c->nlisten);
	FZ_ASSERT(c->daemon.workers >= 1 && c->daemon.workers <= OM_CONF_WORKERS_MAX, "workers %u",
	    c->daemon.workers);
	FZ_ASSERT(strnlen(c->daemon.pid_file, PATH_MAX) < PATH_MAX, "pid_file");
	FZ_ASSERT(strnlen(c->log.file, PATH_MAX) < PATH_MAX, "log file");
	FZ_ASSERT(strnlen(c->memory.path, PATH_MAX) < PATH_MAX, "memory path");
	FZ_ASSERT(strnlen(c->persistent.path, PATH_MAX) < PATH_MAX, "persistent path");
	FZ_ASSERT(c->index.max_uri >= 1 && c->index.max_uri <= 1024, "max_uri %u", c->index.max_uri);
	FZ_ASSERT(c->index.capacity >= 1, "capacity %u", c->index.capacity);
	check_owner(&c->daemon.run_as);
	for (unsigned i = 0; i < c->nlisten; i++) {
		const om_conf_listen_t *l = &c->listen[i];

		FZ_ASSERT(strnlen(l->name, sizeof(l->name)) < sizeof(l->name) && l->name[0] != '\0',
		    "listener name");
		FZ_ASSERT(l->type == OM_CONF_LISTEN_UNIX || l->type == OM_CONF_LISTEN_TCP ||
		    l->type == OM_CONF_LISTEN_UDP, "[listen.%s] type %d", l->name, (int)l->type);
		FZ_ASSERT(strnlen(l->path, sizeof(l->path)) < sizeof(l->path), "path");
		if (l->type == OM_CONF_LISTEN_UNIX)
			FZ_ASSERT(l->path[0] == '/', "[listen.%s] socket path %s", l->name, l->path);
		else
			FZ_ASSERT(l->port <= 65535 && strnlen(l->address, sizeof(l->address)) <
			    sizeof(l->address), "[listen.%s] port %u", l->name, l->port);
		FZ_ASSERT(!l->http || l->type != OM_CONF_LISTEN_UDP, "http over udp");
		check_owner(&l->owner);
		check_acl(&l->allow_read);
		check_acl(&l->allow_write);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	om_conf_t *c = (om_conf_t *)&err; /* must be set to NULL on failure */
	int rc;

	if (fd < 0) {
		fd = memfd_create("fuzz_conf", MFD_CLOEXEC);
		FZ_ASSERT(fd >= 0, "memfd_create: %s", strerror(errno));
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	FZ_ASSERT(ftruncate(fd, 0) == 0, "ftruncate");
	FZ_ASSERT(pwrite(fd, data, size, 0) == (ssize_t)size, "pwrite");

	memset(err, 'x', sizeof(err));
	rc = om_conf_load(path, &c, err, sizeof(err));
	FZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL, "message not terminated");
	if (rc == 0) {
		FZ_ASSERT(c != NULL, "no configuration");
		check_conf(c);
		om_conf_free(c);
	} else {
		FZ_ASSERT(rc < 0, "rc %d", rc);
		FZ_ASSERT(c == NULL, "a configuration with an error");
		FZ_ASSERT(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':',
		    "message does not name the file: %s", err);
		FZ_ASSERT(strchr(err, '\n') == NULL, "message of several lines: %s", err);
	}
	return 0;
}
