/*
 * The configuration parser: defaults, every key, relative paths, users and
 * groups, comments and syntax, and each error with its file, line and key.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/om_conf.h"
#include "om_test.h"

/* snprintf that must not truncate (and that GCC then does not warn about). */
#define FMT(buf, ...) \
	assert_true((size_t)snprintf((buf), sizeof(buf), __VA_ARGS__) < sizeof(buf))

#define LISTEN "[listen.l]\ntype = unix\npath = /tmp/om.sock\n"

struct fx {
	char dir[PATH_MAX];
	char real[PATH_MAX]; /* realpath of dir */
	char file[PATH_MAX]; /* dir/t.conf */
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	om_test_mkdtemp(f->dir, sizeof(f->dir), NULL);
	assert_non_null(realpath(f->dir, f->real));
	FMT(f->file, "%s/t.conf", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	assert_int_equal(om_test_rmtree(f->dir), 0);
	free(f);
	return 0;
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
	assert_int_equal(fclose(fp), 0);
}

/* Loads text as f->file; fails the test with the message if it does not load. */
static om_conf_t *
load_ok(struct fx *f, const char *text)
{
	om_conf_t *c = NULL;
	char err[1024];
	int rc;

	write_file(f->file, text);
	rc = om_conf_load(f->file, &c, err, sizeof(err));
	if (rc != 0)
		fail_msg("om_conf_load: %d: %s", rc, err);
	assert_non_null(c);
	assert_string_equal(err, "");
	return c;
}

/* Loads text as f->file and expects exactly "FILE:LINE: msg" (or "FILE: msg"). */
static void
load_err(struct fx *f, const char *text, unsigned line, const char *msg)
{
	om_conf_t *c = (om_conf_t *)1;
	char err[1024], want[1024];
	int rc;

	write_file(f->file, text);
	rc = om_conf_load(f->file, &c, err, sizeof(err));
	if (line != 0)
		FMT(want, "%s:%u: %s", f->file, line, msg);
	else
		FMT(want, "%s: %s", f->file, msg);
	assert_string_equal(err, want);
	assert_int_equal(rc, -EINVAL);
	assert_null(c);
}

static void
check_defaults(const om_conf_t *c)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	assert_int_equal(c->daemon.workers_auto, 1);
	assert_int_equal(c->daemon.workers, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
	assert_string_equal(c->daemon.run_as.user, "");
	assert_int_equal(c->daemon.run_as.uid, (uid_t)-1);
	assert_int_equal(c->daemon.run_as.user_gid, (gid_t)-1);
	assert_string_equal(c->daemon.run_as.group, "");
	assert_int_equal(c->daemon.run_as.gid, (gid_t)-1);
	assert_string_equal(c->daemon.pid_file, "/run/objmapper/objmapperd.pid");
	assert_int_equal(c->daemon.shutdown_timeout_ms, 30000);
	assert_int_equal(c->daemon.max_connections, 1024);

	assert_int_equal(c->log.target, OM_LOG_SYSLOG);
	assert_string_equal(c->log.file, "/var/log/objmapper/objmapperd.log");
	assert_int_equal(c->log.level, OM_LOG_INFO);

	assert_int_equal(c->index.capacity, 1000000);
	assert_int_equal(c->index.max_uri, 1024);
	assert_int_equal(c->index.arena_bytes, 0);
	assert_int_equal(c->index.atime_res_ms, 500);
	/* Beside the pid file. */
	assert_string_equal(c->index.file, "/run/objmapper/objmapperd.index");

	assert_string_equal(c->memory.path, "/run/objmapper/memory");
	/* Half of the memory tier's filesystem (Debian's /run: 10% of RAM),
	 * and 5% of each filesystem kept free. */
	assert_int_equal(c->memory.size.bytes, 0);
	assert_int_equal(c->memory.size.pct, 50);
	assert_int_equal(c->memory.reserve.bytes, 0);
	assert_int_equal(c->memory.reserve.pct, 5);
	/* Objects of up to 16 KiB packed, in either tier. */
	assert_int_equal(c->memory.pack_max, 16 * 1024);

	assert_string_equal(c->persistent.path, "/var/lib/objmapper/objects");
	assert_int_equal(c->persistent.size.bytes, 0);
	assert_int_equal(c->persistent.size.pct, 0);
	assert_int_equal(c->persistent.reserve.pct, 5);
	assert_int_equal(c->persistent.pack_max, 16 * 1024);
	assert_int_equal(c->cache.eviction, OM_EVICTION_LRU);
	assert_int_equal(c->cache.scrub_rate, 8u << 20);
	assert_int_equal(c->cache.scrub_interval_ms, 3600u * 1000u);
	assert_int_equal(c->persistent.durability, OM_DURABLE_NONE);

	assert_int_equal(c->cache.interval_ms, 1000);
	assert_int_equal(c->cache.promote_hits, 4);
	assert_int_equal(c->cache.promote_max_size, 0);
	assert_int_equal(c->cache.evict_samples, 16);
	assert_int_equal(c->cache.max_metadata, 2048);

	assert_int_equal(c->nlisten, 1);
	assert_string_equal(c->listen[0].name, "local");
	assert_int_equal(c->listen[0].type, OM_CONF_LISTEN_UNIX);
	assert_string_equal(c->listen[0].path, "/run/objmapper/objmapper.sock");
	assert_int_equal(c->listen[0].mode, 0660);
	assert_string_equal(c->listen[0].owner.user, "");
	assert_int_equal(c->listen[0].owner.uid, (uid_t)-1);
	assert_string_equal(c->listen[0].owner.group, "");
	assert_int_equal(c->listen[0].owner.gid, (gid_t)-1);
	assert_int_equal(c->listen[0].backlog, 511);
	assert_true(c->listen[0].inline_threshold == OM_CONF_SIZE_AUTO);
	assert_int_equal(c->listen[0].send_buffer, 2u << 20);
	assert_int_equal(c->listen[0].allow_read.n, 0);
	assert_int_equal(c->listen[0].allow_write.n, 1);
	assert_int_equal(c->listen[0].allow_write.e[0].kind, OM_ACL_ANY);
	assert_int_equal(c->listen[0].idle_timeout_ms, 60000);
	assert_int_equal(c->listen[0].request_timeout_ms, 10000);
	assert_int_equal(c->listen[0].min_rate, 256u << 10);
	assert_int_equal(c->listen[0].max_object_size, 0);
	assert_int_equal(c->listen[0].max_pipeline, 128);
	assert_int_equal(c->listen[0].max_buffer, 4u << 20);
	assert_int_equal(c->daemon.max_files, 0);
}

/* TCP and UDP listeners, allow lists of every kind. */
static void
test_net_listeners(void **state)
{
	struct fx *f = *state;
	static const uint8_t lo4[16] = { [10] = 0xff, [11] = 0xff, [12] = 127 };
	static const uint8_t net10[16] = { [10] = 0xff, [11] = 0xff, [12] = 10, [13] = 1 };
	static const uint8_t v6[16] = { 0xfd, 0x00, 0x12, 0x34 };
	static const uint8_t any6[16] = { 0 };
	om_conf_t *c = load_ok(f,
	    "[daemon]\nmax_files = 4096\n"
	    "[listen.t]\ntype = tcp\nport = 7070\n"
	    "[listen.t6]\ntype = tcp\naddress = ::\nport = 7070\nallow_read = any\n"
	    "allow_write = 10.1.0.0/16, fd00:1234::/32 127.0.0.1\n"
	    "idle_timeout = 5s\nrequest_timeout = 250ms\nmax_object_size = 1M\n"
	    "max_pipeline = 1\nmax_buffer = 64K\n"
	    "[listen.u]\ntype = udp\naddress = 127.0.0.1\nport = 7070\nmax_datagram = 65507\n"
	    "amplification = 1\n"
	    "[listen.x]\ntype = unix\npath = /tmp/x.sock\n"
	    "allow_read = user:nobody uid:4242 group:root\nallow_write = gid:4243\n");
	const om_conf_listen_t *t = &c->listen[0], *t6 = &c->listen[1], *u = &c->listen[2];
	const om_conf_listen_t *x = &c->listen[3];

	assert_int_equal(c->daemon.max_files, 4096);
	assert_int_equal(c->nlisten, 4);
	assert_int_equal(t->type, OM_CONF_LISTEN_TCP);
	assert_string_equal(t->address, "127.0.0.1");
	assert_int_equal(t->family, AF_INET);
	assert_memory_equal(t->addr, lo4, 13);
	assert_int_equal(t->port, 7070);
	assert_string_equal(t->path, "");
	/* Default: the loopback networks may read and write. */
	assert_int_equal(t->allow_read.n, 0);
	assert_int_equal(t->allow_write.n, 2);
	assert_int_equal(t->allow_write.e[0].kind, OM_ACL_NET);
	assert_int_equal(t->allow_write.e[0].prefix, 104);
	assert_memory_equal(t->allow_write.e[0].addr, lo4, 16);
	assert_int_equal(t->allow_write.e[1].prefix, 128);

	assert_int_equal(t6->family, AF_INET6);
	assert_memory_equal(t6->addr, any6, 16);
	assert_int_equal(t6->allow_read.n, 1);
	assert_int_equal(t6->allow_read.e[0].kind, OM_ACL_ANY);
	assert_int_equal(t6->allow_write.n, 3);
	assert_int_equal(t6->allow_write.e[0].prefix, 96 + 16);
	assert_memory_equal(t6->allow_write.e[0].addr, net10, 16);
	assert_int_equal(t6->allow_write.e[1].prefix, 32);
	assert_memory_equal(t6->allow_write.e[1].addr, v6, 16);
	assert_int_equal(t6->allow_write.e[2].prefix, 128);
	assert_int_equal(t6->idle_timeout_ms, 5000);
	assert_int_equal(t6->request_timeout_ms, 250);
	assert_int_equal(t6->max_object_size, 1u << 20);
	assert_int_equal(t6->max_pipeline, 1);
	assert_int_equal(t6->max_buffer, 64u << 10);

	assert_int_equal(u->type, OM_CONF_LISTEN_UDP);
	assert_int_equal(u->max_datagram, 65507);
	assert_int_equal(u->amplification, 1);

	assert_int_equal(x->allow_read.n, 3);
	assert_int_equal(x->allow_read.e[0].kind, OM_ACL_UID);
	assert_int_equal(x->allow_read.e[0].id, getpwnam("nobody")->pw_uid);
	assert_int_equal(x->allow_read.e[1].kind, OM_ACL_UID);
	assert_int_equal(x->allow_read.e[1].id, 4242);
	assert_int_equal(x->allow_read.e[2].kind, OM_ACL_GID);
	assert_int_equal(x->allow_read.e[2].id, 0);
	assert_int_equal(x->allow_write.n, 1);
	assert_int_equal(x->allow_write.e[0].kind, OM_ACL_GID);
	assert_int_equal(x->allow_write.e[0].id, 4243);
	om_conf_free(c);
}

static void
test_defaults(void **state)
{
	struct fx *f = *state;
	om_conf_t *c = load_ok(f, "[listen.local]\ntype = unix\n"
	    "path = /run/objmapper/objmapper.sock\n");

	check_defaults(c);
	assert_string_equal(c->file, f->file);
	assert_int_equal(c->listen[0].line, 1);
	om_conf_free(c);
	om_conf_free(NULL);
}

static void
test_every_key(void **state)
{
	struct fx *f = *state;
	struct passwd *pw = getpwnam("nobody");
	struct group *gr = getgrnam("root");
	uid_t nobody;
	gid_t nobody_gid, root_gid;
	om_conf_t *c;

	assert_non_null(pw);
	nobody = pw->pw_uid;
	nobody_gid = pw->pw_gid;
	assert_non_null(gr);
	root_gid = gr->gr_gid;
	assert_true(nobody_gid != root_gid);

	c = load_ok(f,
	    "[daemon]\n"
	    "workers = 3\n"
	    "user = nobody\n"
	    "group = root\n"
	    "pid_file = /x/om.pid\n"
	    "shutdown_timeout = 90\n"
	    "max_connections = 1000000\n"
	    "[log]\n"
	    "target = file\n"
	    "file = /x/om.log\n"
	    "level = debug\n"
	    "[index]\n"
	    "capacity = 100000000\n"
	    "max_uri = 16\n"
	    "arena = 4K\n"
	    "atime_resolution = 16ms\n"
	    "file = none\n"
	    "[memory]\n"
	    "path = /x/mem\n"
	    "size = 3g\n"
	    "reserve = 100%\n"
	    "[persistent]\n"
	    "path = /x/disk\n"
	    "size = 2T\n"
	    "reserve = 0\n"
	    "durability = fsync\n"
	    "[cache]\n"
	    "interval = 2m\n"
	    "promote_hits = 0\n"
	    "promote_max_size = 10M\n"
	    "evict_samples = 64\n"
	    "max_metadata = 0\n"
	    "eviction = none\n"
	    "scrub_rate = 0\n"
	    "scrub_interval = 168h\n"
	    "[listen.a-1_B]\n"
	    "type = unix\n"
	    "path = /x/a.sock\n"
	    "mode = 600\n"
	    "owner = root\n"
	    "group = nogroup\n"
	    "backlog = 65535\n"
	    "inline_threshold = 64M\n"
	    "send_buffer = 0\n"
	    "[listen.b]\n"
	    "type = unix\n"
	    "path = /x/b.sock\n"
	    "mode = 0755\n"
	    "inline_threshold = 0\n"
	    "[listen.c]\n"
	    "type = tcp\n"
	    "port = 7070\n"
	    "inline_threshold = auto\n");

	assert_int_equal(c->daemon.workers, 3);
	assert_int_equal(c->daemon.workers_auto, 0);
	assert_string_equal(c->daemon.run_as.user, "nobody");
	assert_int_equal(c->daemon.run_as.uid, nobody);
	assert_int_equal(c->daemon.run_as.user_gid, nobody_gid);
	assert_string_equal(c->daemon.run_as.group, "root");
	assert_int_equal(c->daemon.run_as.gid, root_gid);
	assert_string_equal(c->daemon.pid_file, "/x/om.pid");
	assert_string_equal(c->index.file, "none");
	assert_int_equal(c->daemon.shutdown_timeout_ms, 90000);
	assert_int_equal(c->daemon.max_connections, 1000000);

	assert_int_equal(c->log.target, OM_LOG_FILE);
	assert_string_equal(c->log.file, "/x/om.log");
	assert_int_equal(c->log.level, OM_LOG_DEBUG);

	assert_int_equal(c->index.capacity, 100000000);
	assert_int_equal(c->index.max_uri, 16);
	assert_int_equal(c->index.arena_bytes, 4096);
	assert_int_equal(c->index.atime_res_ms, 16);

	assert_string_equal(c->memory.path, "/x/mem");
	assert_int_equal(c->memory.size.bytes, 3ull << 30);
	assert_int_equal(c->memory.size.pct, 0);
	assert_int_equal(c->memory.reserve.bytes, 0);
	assert_int_equal(c->memory.reserve.pct, 100);
	assert_string_equal(c->persistent.path, "/x/disk");
	assert_int_equal(c->persistent.size.bytes, 2ull << 40);
	assert_int_equal(c->persistent.reserve.bytes, 0);
	assert_int_equal(c->persistent.reserve.pct, 0);
	assert_int_equal(c->cache.eviction, OM_EVICTION_NONE);
	assert_int_equal(c->cache.scrub_rate, 0);
	assert_int_equal(c->cache.scrub_interval_ms, 168u * 3600u * 1000u);
	assert_int_equal(c->persistent.durability, OM_DURABLE_FSYNC);

	assert_int_equal(c->cache.interval_ms, 120000);
	assert_int_equal(c->cache.promote_hits, 0);
	assert_int_equal(c->cache.promote_max_size, 10ull << 20);
	assert_int_equal(c->cache.evict_samples, 64);
	assert_int_equal(c->cache.max_metadata, 0);

	assert_int_equal(c->nlisten, 3);
	assert_string_equal(c->listen[0].name, "a-1_B");
	assert_int_equal(c->listen[0].line, 36);
	assert_int_equal(c->listen[0].type, OM_CONF_LISTEN_UNIX);
	assert_string_equal(c->listen[0].path, "/x/a.sock");
	assert_int_equal(c->listen[0].mode, 0600);
	assert_string_equal(c->listen[0].owner.user, "root");
	assert_int_equal(c->listen[0].owner.uid, 0);
	assert_string_equal(c->listen[0].owner.group, "nogroup");
	assert_int_equal(c->listen[0].owner.gid, getgrnam("nogroup")->gr_gid);
	assert_int_equal(c->listen[0].backlog, 65535);
	assert_int_equal(c->listen[0].inline_threshold, 64ull << 20);
	assert_int_equal(c->listen[0].send_buffer, 0);

	/* The second listener takes the daemon's user and group. */
	assert_string_equal(c->listen[1].name, "b");
	assert_int_equal(c->listen[1].line, 45);
	assert_string_equal(c->listen[1].path, "/x/b.sock");
	assert_int_equal(c->listen[1].mode, 0755);
	assert_string_equal(c->listen[1].owner.user, "nobody");
	assert_int_equal(c->listen[1].owner.uid, nobody);
	assert_string_equal(c->listen[1].owner.group, "root");
	assert_int_equal(c->listen[1].owner.gid, root_gid);
	assert_int_equal(c->listen[1].backlog, 511);
	assert_int_equal(c->listen[1].inline_threshold, 0);
	assert_true(c->listen[2].inline_threshold == OM_CONF_SIZE_AUTO);
	assert_int_equal(c->listen[1].send_buffer, 2u << 20);
	om_conf_free(c);

	c = load_ok(f, "[daemon]\nworkers = auto\n" LISTEN);
	assert_int_equal(c->daemon.workers_auto, 1);
	assert_true(c->daemon.workers >= 1 && c->daemon.workers <= 256);
	om_conf_free(c);
	c = load_ok(f, "[daemon]\nworkers = 256\n" LISTEN);
	assert_int_equal(c->daemon.workers, 256);
	assert_int_equal(c->daemon.workers_auto, 0);
	om_conf_free(c);
}

/* Sizes, durations and modes, value by value, through one key each. */
static void
test_values(void **state)
{
	static const struct {
		const char *v;
		unsigned long long want;
	} sizes[] = {
		{ "0", 0 }, { "1", 1 }, { "4095", 4095 }, { "64K", 64ull << 10 },
		{ "64k", 64ull << 10 }, { "3M", 3ull << 20 }, { "5m", 5ull << 20 },
		{ "2G", 2ull << 30 }, { "1t", 1ull << 40 }, { "0K", 0 },
		{ "007", 7 }, { "16777215T", 16777215ull << 40 },
		{ "18446744073709551615", 18446744073709551615ull },
	}, durations[] = {
		{ "100ms", 100 }, { "250ms", 250 }, { "2", 2000 }, { "2s", 2000 },
		{ "3m", 180000 }, { "1h", 3600000 }, { "60m", 3600000 },
		{ "3600s", 3600000 }, { "3600000ms", 3600000 },
	}, modes[] = {
		{ "0660", 0660 }, { "660", 0660 }, { "000", 0 }, { "7777", 07777 },
		{ "0600", 0600 }, { "1750", 01750 },
	};
	struct fx *f = *state;
	char text[512];
	om_conf_t *c;
	size_t i;

	for (i = 0; i < OM_ARRAY_LEN(sizes); i++) {
		FMT(text, "[memory]\nsize = %s\n" LISTEN, sizes[i].v);
		c = load_ok(f, text);
		assert_int_equal(c->memory.size.bytes, sizes[i].want);
		assert_int_equal(c->memory.size.pct, 0);
		om_conf_free(c);
	}
	for (i = 0; i < OM_ARRAY_LEN(durations); i++) {
		FMT(text, "[cache]\ninterval = %s\n" LISTEN, durations[i].v);
		c = load_ok(f, text);
		assert_int_equal(c->cache.interval_ms, durations[i].want);
		om_conf_free(c);
	}
	for (i = 0; i < OM_ARRAY_LEN(modes); i++) {
		FMT(text, LISTEN "mode = %s\n", modes[i].v);
		c = load_ok(f, text);
		assert_int_equal(c->listen[0].mode, modes[i].want);
		om_conf_free(c);
	}
	/* The ends of each range load. */
	c = load_ok(f, "[daemon]\nshutdown_timeout = 0\n[index]\ncapacity = 1\n"
	    "max_uri = 1024\narena = 0\natime_resolution = 1h\n"
	    "[cache]\npromote_hits = 1024\nevict_samples = 1\nmax_metadata = 2048\n"
	    LISTEN "backlog = 1\n");
	assert_int_equal(c->daemon.shutdown_timeout_ms, 0);
	assert_int_equal(c->index.capacity, 1);
	assert_int_equal(c->index.atime_res_ms, 3600000);
	assert_int_equal(c->cache.promote_hits, 1024);
	assert_int_equal(c->cache.evict_samples, 1);
	assert_int_equal(c->listen[0].backlog, 1);
	om_conf_free(c);
}

/* Relative paths are appended to the real path of the file's directory. */
static void
test_relative_paths(void **state)
{
	struct fx *f = *state;
	char var[PATH_MAX], file[PATH_MAX], link[PATH_MAX], want[PATH_MAX * 2];
	char err[1024];
	om_conf_t *c = NULL;
	int cwd;

	FMT(var, "%s/var", f->dir);
	assert_int_equal(mkdir(var, 0755), 0);
	FMT(file, "%s/om.conf", var);
	write_file(file,
	    "[daemon]\npid_file = run/om.pid\n"
	    "[log]\nfile = om.log\n"
	    "[memory]\npath = ../mem\n"
	    "[persistent]\npath = disk\n"
	    "[listen.l]\ntype = unix\npath = objmapper.sock\n"
	    "[listen.abs]\ntype = unix\npath = /run/abs.sock\n");

	assert_int_equal(om_conf_load(file, &c, err, sizeof(err)), 0);
	FMT(want, "%s/var/run/om.pid", f->real);
	assert_string_equal(c->daemon.pid_file, want);
	FMT(want, "%s/var/om.log", f->real);
	assert_string_equal(c->log.file, want);
	FMT(want, "%s/var/../mem", f->real);
	assert_string_equal(c->memory.path, want);
	FMT(want, "%s/var/disk", f->real);
	assert_string_equal(c->persistent.path, want);
	FMT(want, "%s/var/objmapper.sock", f->real);
	assert_string_equal(c->listen[0].path, want);
	assert_string_equal(c->listen[1].path, "/run/abs.sock");
	om_conf_free(c);

	/* Through a symbolic link to the directory: its real path is used. */
	FMT(link, "%s/link", f->dir);
	assert_int_equal(symlink("var", link), 0);
	FMT(file, "%s/om.conf", link);
	assert_int_equal(om_conf_load(file, &c, err, sizeof(err)), 0);
	FMT(want, "%s/var/objmapper.sock", f->real);
	assert_string_equal(c->listen[0].path, want);
	om_conf_free(c);

	/* A relative file name: relative to the current directory. */
	cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(cwd >= 0);
	assert_int_equal(chdir(f->dir), 0);
	assert_int_equal(om_conf_load("var/om.conf", &c, err, sizeof(err)), 0);
	assert_string_equal(c->listen[0].path, want);
	om_conf_free(c);
	assert_int_equal(chdir("var"), 0);
	assert_int_equal(om_conf_load("om.conf", &c, err, sizeof(err)), 0);
	assert_string_equal(c->listen[0].path, want);
	assert_string_equal(c->file, "om.conf");
	om_conf_free(c);
	assert_int_equal(fchdir(cwd), 0);
	close(cwd);
}

/* The socket path limit applies after resolution. */
static void
test_socket_path_limit(void **state)
{
	struct fx *f = *state;
	char sub[PATH_MAX], file[PATH_MAX], text[512], want[1024], path[PATH_MAX];
	char err[1024];
	size_t base;
	om_conf_t *c = NULL;
	int rc;

	/* A directory whose real path is 100 bytes long. */
	base = strlen(f->real);
	assert_true(base < 90);
	FMT(sub, "%s/%0*d", f->real, (int)(100 - base - 1), 0);
	assert_int_equal(mkdir(sub, 0755), 0);
	FMT(file, "%s/om.conf", sub);

	/* 100 + "/" + 6 = 107 bytes: the largest that fits. */
	write_file(file, "[listen.l]\ntype = unix\npath = 123456\n");
	assert_int_equal(om_conf_load(file, &c, err, sizeof(err)), 0);
	assert_int_equal(strlen(c->listen[0].path), 107);
	om_conf_free(c);

	write_file(file, "[listen.l]\ntype = unix\npath = 1234567\n");
	c = (om_conf_t *)1;
	rc = om_conf_load(file, &c, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	assert_null(c);
	FMT(path, "%s/%0*d/1234567", f->real, (int)(100 - base - 1), 0);
	FMT(want, "%s:3: [listen.l] path: \"%s\" is too long for a "
	    "unix socket (108 bytes, at most 107)", file, path);
	assert_string_equal(err, want);

	/* Absolute, too long. */
	FMT(text, "[listen.l]\ntype = unix\npath = /%0120d\n", 0);
	FMT(path, "/%0120d", 0);
	FMT(want, "[listen.l] path: \"%s\" is too long for a unix "
	    "socket (121 bytes, at most 107)", path);
	load_err(f, text, 3, want);
}

static void
test_users_and_groups(void **state)
{
	struct fx *f = *state;
	struct passwd *pw = getpwnam("nobody");
	struct group *gr;
	om_conf_t *c;
	uid_t uid;
	gid_t gid;
	char gname[256];

	assert_non_null(pw);
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	gr = getgrgid(gid);
	assert_non_null(gr);
	FMT(gname, "%s", gr->gr_name);

	/* The group defaults to the user's primary group; listeners inherit. */
	c = load_ok(f, "[daemon]\nuser = nobody\n" LISTEN);
	assert_string_equal(c->daemon.run_as.user, "nobody");
	assert_int_equal(c->daemon.run_as.uid, uid);
	assert_int_equal(c->daemon.run_as.user_gid, gid);
	assert_int_equal(c->daemon.run_as.gid, gid);
	assert_string_equal(c->daemon.run_as.group, gname);
	assert_string_equal(c->listen[0].owner.user, "nobody");
	assert_int_equal(c->listen[0].owner.uid, uid);
	assert_int_equal(c->listen[0].owner.gid, gid);
	assert_string_equal(c->listen[0].owner.group, gname);
	om_conf_free(c);

	/* A group alone changes only the group; a listener's owner alone
	 * leaves its group to the daemon's. */
	c = load_ok(f, "[daemon]\ngroup = root\n" LISTEN "owner = nobody\n");
	assert_string_equal(c->daemon.run_as.user, "");
	assert_int_equal(c->daemon.run_as.uid, (uid_t)-1);
	assert_string_equal(c->daemon.run_as.group, "root");
	assert_int_equal(c->daemon.run_as.gid, 0);
	assert_string_equal(c->listen[0].owner.user, "nobody");
	assert_int_equal(c->listen[0].owner.uid, uid);
	assert_string_equal(c->listen[0].owner.group, "root");
	assert_int_equal(c->listen[0].owner.gid, 0);
	om_conf_free(c);

	/* A listener's group alone; its owner stays unchanged. */
	c = load_ok(f, LISTEN "group = root\n");
	assert_int_equal(c->listen[0].owner.uid, (uid_t)-1);
	assert_string_equal(c->listen[0].owner.user, "");
	assert_int_equal(c->listen[0].owner.gid, 0);
	om_conf_free(c);

	/* Empty values are the same as leaving the key out. */
	c = load_ok(f, "[daemon]\nuser =\ngroup =\n" LISTEN "owner =\ngroup =\n");
	assert_int_equal(c->daemon.run_as.uid, (uid_t)-1);
	assert_int_equal(c->daemon.run_as.gid, (gid_t)-1);
	assert_int_equal(c->listen[0].owner.uid, (uid_t)-1);
	assert_int_equal(c->listen[0].owner.gid, (gid_t)-1);
	om_conf_free(c);

	load_err(f, "[daemon]\nuser = om-no-such-user\n" LISTEN, 2,
	    "[daemon] user: unknown user \"om-no-such-user\"");
	load_err(f, "[daemon]\ngroup = om-no-such-group\n" LISTEN, 2,
	    "[daemon] group: unknown group \"om-no-such-group\"");
	load_err(f, LISTEN "owner = om-no-such-user\n", 4,
	    "[listen.l] owner: unknown user \"om-no-such-user\"");
	load_err(f, LISTEN "group = om-no-such-group\n", 4,
	    "[listen.l] group: unknown group \"om-no-such-group\"");
}

/* Comments, whitespace, CRLF, a byte order mark, ':' as separator. */
static void
test_syntax(void **state)
{
	struct fx *f = *state;
	om_conf_t *c;
	char text[1024];

	c = load_ok(f,
	    "\xEF\xBB\xBF[daemon]   ; the first section\r\n"
	    "# a comment\r\n"
	    "; another\r\n"
	    "   ; an indented comment\r\n"
	    "\r\n"
	    "workers = 2 # two\r\n"
	    "  max_connections = 7   ; indented: not a continuation\r\n"
	    "\tshutdown_timeout: 5s\r\n"
	    "pid_file = /a#b;c\r\n"
	    "[listen.l]\r\n"
	    "type=unix\r\n"
	    "path=/tmp/om.sock#x\r\n");
	assert_int_equal(c->daemon.workers, 2);
	assert_int_equal(c->daemon.max_connections, 7);
	assert_int_equal(c->daemon.shutdown_timeout_ms, 5000);
	assert_string_equal(c->daemon.pid_file, "/a#b;c");
	assert_string_equal(c->listen[0].path, "/tmp/om.sock#x");
	assert_int_equal(c->listen[0].line, 10);
	om_conf_free(c);

	/* A long comment is no long line. */
	FMT(text, "# %0300d\n[daemon]\nworkers = 1   ; %0300d\n" LISTEN, 0, 0);
	c = load_ok(f, text);
	assert_int_equal(c->daemon.workers, 1);
	om_conf_free(c);

	/* A file without a final newline. */
	c = load_ok(f, "[listen.l]\ntype = unix\npath = /tmp/om.sock");
	assert_string_equal(c->listen[0].path, "/tmp/om.sock");
	om_conf_free(c);
}

struct err_case {
	const char *text;
	unsigned line; /* 0: "FILE: message" */
	const char *msg;
};

static const struct err_case errors[] = {
	/* Numbers and ranges. */
	{ "[index]\ncapacity = abc\n" LISTEN, 2, "[index] capacity: \"abc\" is not a number" },
	{ "[index]\ncapacity = 0\n" LISTEN, 2, "[index] capacity: 0 is out of range (1..100000000)" },
	{ "[index]\ncapacity = 100000001\n" LISTEN, 2,
	    "[index] capacity: 100000001 is out of range (1..100000000)" },
	{ "[index]\ncapacity = 99999999999999999999999\n" LISTEN, 2,
	    "[index] capacity: 99999999999999999999999 is out of range (1..100000000)" },
	{ "[index]\ncapacity = 0x10\n" LISTEN, 2, "[index] capacity: \"0x10\" is not a number" },
	{ "[index]\ncapacity = 1e6\n" LISTEN, 2, "[index] capacity: \"1e6\" is not a number" },
	{ "[index]\ncapacity = +5\n" LISTEN, 2, "[index] capacity: \"+5\" is not a number" },
	{ "[index]\ncapacity =\n" LISTEN, 2, "[index] capacity: \"\" is not a number" },
	{ "[index]\nmax_uri = 15\n" LISTEN, 2, "[index] max_uri: 15 is out of range (16..1024)" },
	{ "[index]\nmax_uri = 1025\n" LISTEN, 2, "[index] max_uri: 1025 is out of range (16..1024)" },
	{ "[index]\narena = 1K\n" LISTEN, 2, "[index] arena: 1K is out of range (0, or 4K..63G)" },
	{ "[index]\narena = 4095\n" LISTEN, 2, "[index] arena: 4095 is out of range (0, or 4K..63G)" },
	/* What the index can hold: 1T was taken, and the start failed with
	 * "Invalid argument". */
	{ "[index]\narena = 64G\n" LISTEN, 2, "[index] arena: 64G is out of range (0, or 4K..63G)" },
	{ "[index]\narena = 1T\n" LISTEN, 2, "[index] arena: 1T is out of range (0, or 4K..63G)" },
	{ "[index]\natime_resolution = 15ms\n" LISTEN, 2,
	    "[index] atime_resolution: 15ms is out of range (16ms..1h)" },
	{ "[daemon]\nworkers = 0\n" LISTEN, 2, "[daemon] workers: 0 is out of range (1..256, or auto)" },
	{ "[daemon]\nworkers = 257\n" LISTEN, 2,
	    "[daemon] workers: 257 is out of range (1..256, or auto)" },
	{ "[daemon]\nworkers = -1\n" LISTEN, 2, "[daemon] workers: -1 is out of range (1..256, or auto)" },
	{ "[daemon]\nworkers = many\n" LISTEN, 2, "[daemon] workers: \"many\" is not a number or auto" },
	{ "[daemon]\nworkers = 2 x\n" LISTEN, 2, "[daemon] workers: \"2 x\" is not a number or auto" },
	{ "[daemon]\nmax_connections = 0\n" LISTEN, 2,
	    "[daemon] max_connections: 0 is out of range (1..1000000)" },
	{ "[daemon]\nmax_connections = 1000001\n" LISTEN, 2,
	    "[daemon] max_connections: 1000001 is out of range (1..1000000)" },
	{ "[daemon]\nshutdown_timeout = 61m\n" LISTEN, 2,
	    "[daemon] shutdown_timeout: 61m is out of range (0..1h)" },
	{ "[cache]\ninterval = 50ms\n" LISTEN, 2, "[cache] interval: 50ms is out of range (100ms..1h)" },
	{ "[cache]\ninterval = 2h\n" LISTEN, 2, "[cache] interval: 2h is out of range (100ms..1h)" },
	{ "[cache]\ninterval = 0\n" LISTEN, 2, "[cache] interval: 0 is out of range (100ms..1h)" },
	{ "[cache]\ninterval = 5x\n" LISTEN, 2,
	    "[cache] interval: \"5x\" is not a duration (a number with an optional ms, s, m or h)" },
	{ "[cache]\ninterval = 1.5s\n" LISTEN, 2,
	    "[cache] interval: \"1.5s\" is not a duration (a number with an optional ms, s, m or h)" },
	{ "[cache]\ninterval = 1S\n" LISTEN, 2,
	    "[cache] interval: \"1S\" is not a duration (a number with an optional ms, s, m or h)" },
	{ "[cache]\ninterval = s\n" LISTEN, 2,
	    "[cache] interval: \"s\" is not a duration (a number with an optional ms, s, m or h)" },
	{ "[cache]\ninterval = 99999999999999999999h\n" LISTEN, 2,
	    "[cache] interval: 99999999999999999999h is out of range (100ms..1h)" },
	{ "[cache]\npromote_hits = 1025\n" LISTEN, 2,
	    "[cache] promote_hits: 1025 is out of range (0..1024)" },
	{ "[cache]\nevict_samples = 0\n" LISTEN, 2, "[cache] evict_samples: 0 is out of range (1..64)" },
	{ "[cache]\nevict_samples = 65\n" LISTEN, 2, "[cache] evict_samples: 65 is out of range (1..64)" },
	{ "[cache]\nmax_metadata = 2049\n" LISTEN, 2,
	    "[cache] max_metadata: 2049 is out of range (0..2048)" },
	{ "[cache]\npromote_max_size = 1P\n" LISTEN, 2,
	    "[cache] promote_max_size: \"1P\" is not a size (a number with an optional K, M, G or T)" },
	{ "[memory]\nsize = 64KB\n" LISTEN, 2,
	    "[memory] size: \"64KB\" is not a size (a number with an optional K, M, G or T, or a "
	    "share of the filesystem such as 50%)" },
	{ "[memory]\nsize = -1\n" LISTEN, 2,
	    "[memory] size: \"-1\" is not a size (a number with an optional K, M, G or T, or a "
	    "share of the filesystem such as 50%)" },
	{ "[memory]\nsize = 64 K\n" LISTEN, 2,
	    "[memory] size: \"64 K\" is not a size (a number with an optional K, M, G or T, or a "
	    "share of the filesystem such as 50%)" },
	{ "[memory]\nsize = 0%\n" LISTEN, 2,
	    "[memory] size: \"0%\" is not a share of the filesystem (1% to 100%)" },
	{ "[persistent]\nreserve = 101%\n" LISTEN, 2,
	    "[persistent] reserve: \"101%\" is not a share of the filesystem (1% to 100%)" },
	{ "[persistent]\nsize = x%\n" LISTEN, 2,
	    "[persistent] size: \"x%\" is not a share of the filesystem (1% to 100%)" },
	{ "[persistent]\nsize = %\n" LISTEN, 2,
	    "[persistent] size: \"%\" is not a size (a number with an optional K, M, G or T, or a "
	    "share of the filesystem such as 50%)" },
	{ "[cache]\neviction = fifo\n" LISTEN, 2,
	    "[cache] eviction: \"fifo\" is not one of lru, none" },
	{ "[memory]\nsize = 16777216T\n" LISTEN, 2, "[memory] size: 16777216T is too large" },
	{ "[memory]\nsize = 18446744073709551616\n" LISTEN, 2,
	    "[memory] size: 18446744073709551616 is too large" },
	{ LISTEN "backlog = 0\n", 4, "[listen.l] backlog: 0 is out of range (1..65535)" },
	{ LISTEN "backlog = 65536\n", 4, "[listen.l] backlog: 65536 is out of range (1..65535)" },
	{ LISTEN "inline_threshold = automatic\n", 4,
	    "[listen.l] inline_threshold: \"automatic\" is not a size (a number with an optional K, M, G or T)" },
	{ LISTEN "inline_threshold = 65M\n", 4,
	    "[listen.l] inline_threshold: 65M is out of range (0..64M, or auto)" },
	{ LISTEN "inline_threshold = 67108865\n", 4,
	    "[listen.l] inline_threshold: 67108865 is out of range (0..64M, or auto)" },
	/* Modes. */
	{ LISTEN "mode = 0888\n", 4,
	    "[listen.l] mode: \"0888\" is not an octal mode (3 or 4 octal digits, e.g. 0660)" },
	{ LISTEN "mode = 66\n", 4,
	    "[listen.l] mode: \"66\" is not an octal mode (3 or 4 octal digits, e.g. 0660)" },
	{ LISTEN "mode = 00660\n", 4,
	    "[listen.l] mode: \"00660\" is not an octal mode (3 or 4 octal digits, e.g. 0660)" },
	{ LISTEN "mode = rw\n", 4,
	    "[listen.l] mode: \"rw\" is not an octal mode (3 or 4 octal digits, e.g. 0660)" },
	/* Choices. */
	{ "[log]\nlevel = loud\n" LISTEN, 2,
	    "[log] level: \"loud\" is not one of error, warn, info, debug" },
	{ "[log]\nlevel = INFO\n" LISTEN, 2,
	    "[log] level: \"INFO\" is not one of error, warn, info, debug" },
	{ "[log]\ntarget = journal\n" LISTEN, 2,
	    "[log] target: \"journal\" is not one of stderr, syslog, file" },
	{ "[persistent]\ndurability = sometimes\n" LISTEN, 2,
	    "[persistent] durability: \"sometimes\" is not one of none, fsync" },
	/* Paths. */
	{ "[daemon]\npid_file =\n" LISTEN, 2, "[daemon] pid_file: empty path" },
	{ "[memory]\npath =   ; nothing\n" LISTEN, 2, "[memory] path: empty path" },
	/* Keys. */
	{ "[daemon]\nworkers = 2\nwrkers = 3\n" LISTEN, 3, "[daemon] wrkers: unknown key" },
	{ LISTEN "prot = 80\n", 4, "[listen.l] prot: unknown key" },
	{ LISTEN "port = 80\n", 4, "[listen.l] port: not a key of unix listeners" },
	{ "[daemon]\n\nworkers = 4\nuser =\n\nworkers = 2\n" LISTEN, 6,
	    "[daemon] workers: duplicate key (first on line 3)" },
	{ "[listen.l]\ntype = unix\npath = /a\npath = /b\n", 4,
	    "[listen.l] path: duplicate key (first on line 3)" },
	{ "workers = 2\n[daemon]\n" LISTEN, 1, "workers: key outside a section" },
	/* Sections. */
	{ "[listen.x y]\ntype = unix\n", 1,
	    "[listen.x y]: bad listener name (1 to 32 characters of A-Z a-z 0-9 _ -)" },
	{ "[listen.]\n", 1, "[listen.]: bad listener name (1 to 32 characters of A-Z a-z 0-9 _ -)" },
	{ "[listen.abcdefghijklmnopqrstuvwxyz0123456]\n", 1,
	    "[listen.abcdefghijklmnopqrstuvwxyz0123456]: bad listener name (1 to 32 characters "
	    "of A-Z a-z 0-9 _ -)" },
	{ LISTEN "\n[foo]\nx = 1\n", 5, "[foo]: unknown section (sections: daemon, log, index, "
	    "memory, persistent, cache, listen.NAME)" },
	{ LISTEN "[listen]\n", 4, "[listen]: unknown section (sections: daemon, log, index, "
	    "memory, persistent, cache, listen.NAME)" },
	{ LISTEN "[Daemon]\n", 4, "[Daemon]: unknown section (sections: daemon, log, index, "
	    "memory, persistent, cache, listen.NAME)" },
	{ "[daemon]\n[log]\n[daemon]\n" LISTEN, 3, "[daemon]: duplicate section (first on line 1)" },
	{ LISTEN "[listen.l]\n", 4, "[listen.l]: duplicate section (first on line 1)" },
	/* Listeners. */
	{ "[daemon]\nworkers = 1\n", 0, "no [listen.NAME] section" },
	{ "", 0, "no [listen.NAME] section" },
	{ "[daemon]\nworkers = 1\n[listen.local]\ntype = unix\n", 3,
	    "[listen.local] path: required key missing" },
	{ "[listen.local]\npath = /x.sock\n", 1, "[listen.local] type: required key missing" },
	{ LISTEN "[listen.e]\n", 4, "[listen.e] type: required key missing" },
	{ "[listen.l]\ntype = sctp\npath = /x.sock\n", 2,
	    "[listen.l] type: unsupported listener type 'sctp' (supported: unix, tcp, udp, http)" },
	{ "[listen.l]\ntype = http\npath = /x.sock\nport = 80\n", 3,
	    "[listen.l] type http: give either path (a Unix socket) or port (TCP), not both" },
	{ "[listen.l]\ntype = http\n", 1,
	    "[listen.l] type http: give either path (a Unix socket) or port (TCP)" },
	{ "[listen.l]\ntype = unix\npath = /x.sock\nmax_header = 4K\n", 4,
	    "[listen.l] max_header: a key of http listeners only" },
	{ "[listen.l]\ntype = http\nport = 80\nmax_header = 100\n", 4,
	    "[listen.l] max_header: 100 is out of range (1K..60K)" },
	{ "[listen.l]\ntype = tcp\nport = 80\nserve = metrics\n", 4,
	    "[listen.l] serve: a key of http listeners only" },
	{ "[listen.l]\ntype = http\nport = 80\nserve = stats\n", 4,
	    "[listen.l] serve: \"stats\" is not one of objects, metrics" },
	{ "[listen.l]\ntype = http\nport = 80\nmode = 0600\n", 4,
	    "[listen.l] mode: not a key of tcp listeners" },
	{ "[listen.l]\ntype = tcp\npath = /x.sock\nport = 1\n", 3,
	    "[listen.l] path: not a key of tcp listeners" },
	{ "[listen.l]\ntype = tcp\n", 1, "[listen.l] port: required key missing" },
	{ "[listen.l]\ntype = udp\nport = 70000\n", 3,
	    "[listen.l] port: 70000 is out of range (1..65535)" },
	{ "[listen.l]\ntype = tcp\nport = 1\naddress = localhost\n", 4,
	    "[listen.l] address: \"localhost\" is not a numeric IPv4 or IPv6 address "
	    "(e.g. 127.0.0.1, ::1, 0.0.0.0, ::)" },
	{ "[listen.l]\ntype = udp\nport = 1\nbacklog = 5\n", 4,
	    "[listen.l] backlog: not a key of udp listeners" },
	{ "[listen.l]\ntype = tcp\nport = 1\nmax_datagram = 600\n", 4,
	    "[listen.l] max_datagram: not a key of tcp listeners" },
	{ "[listen.a]\ntype = tcp\nport = 9\n[listen.b]\ntype = tcp\naddress = 127.0.0.1\nport = 9\n", 4,
	    "[listen.b]: tcp 127.0.0.1 port 9 is also [listen.a] (line 1)" },
	{ "[listen.l]\ntype = tcp\nport = 1\nallow_read = 10.0.0.0/33\n", 4,
	    "[listen.l] allow_read: \"10.0.0.0/33\": bad prefix length" },
	{ "[listen.l]\ntype = tcp\nport = 1\nallow_read = 10.1.0.0/8\n", 4,
	    "[listen.l] allow_read: \"10.1.0.0/8\": address has bits set after the prefix" },
	{ "[listen.l]\ntype = tcp\nport = 1\nallow_write = everyone\n", 4,
	    "[listen.l] allow_write: \"everyone\" is not any, user:NAME, uid:N, group:NAME, gid:N, "
	    "or an address with an optional /PREFIX" },
	{ "[listen.l]\ntype = tcp\nport = 1\nallow_write = uid:0\n", 4,
	    "[listen.l] allow_write: entry 1: tcp listeners take any or ADDRESS[/PREFIX]" },
	{ LISTEN "allow_read = any ::1\n", 4,
	    "[listen.l] allow_read: entry 2: unix listeners take any, user:NAME, uid:N, group:NAME or gid:N" },
	{ LISTEN "allow_read = user:no-such-user-here\n", 4,
	    "[listen.l] allow_read: \"user:no-such-user-here\": unknown user" },
	{ LISTEN "allow_read = ,\n", 4,
	    "[listen.l] allow_read: empty list (leave the key out, or say any)" },
	{ LISTEN "[listen.m]\ntype = unix\npath = /tmp/om.sock\n", 6,
	    "[listen.m] path: \"/tmp/om.sock\" is also the path of [listen.l] (line 3)" },
	{ LISTEN "[listen.m]\ntype = unix\npath = /tmp/./om.sock\n", 6,
	    "[listen.m] path: \"/tmp/./om.sock\" is also the path of [listen.l] (line 3)" },
	{ LISTEN "[listen.m]\ntype = unix\npath = //tmp//om.sock\n", 6,
	    "[listen.m] path: \"//tmp//om.sock\" is also the path of [listen.l] (line 3)" },
	{ LISTEN "[listen.m]\ntype = unix\npath =\n", 6, "[listen.m] path: empty path" },
	/* Syntax. */
	{ "[daemon]\nworkers\n" LISTEN, 2, "syntax error: expected \"key = value\" or \"[section]\"" },
	{ "[daemon]\n= 4\n" LISTEN, 2, "syntax error: expected \"key = value\" or \"[section]\"" },
	{ "[daemon\nworkers = 1\n" LISTEN, 1, "syntax error: no ']' after \"[daemon\"" },
	{ "[daemon] workers = 1\n" LISTEN, 1, "syntax error: \"workers = 1\" after ']'" },
	/* The first error by line wins, whoever found it. */
	{ "[daemon]\nworkers\nworkers = x\n" LISTEN, 2,
	    "syntax error: expected \"key = value\" or \"[section]\"" },
	{ "[daemon]\nworkers = x\nworkers\n" LISTEN, 2,
	    "[daemon] workers: \"x\" is not a number or auto" },
};

static void
test_errors(void **state)
{
	struct fx *f = *state;
	size_t i;

	for (i = 0; i < OM_ARRAY_LEN(errors); i++) {
		print_message("case %zu: %s\n", i, errors[i].msg);
		load_err(f, errors[i].text, errors[i].line, errors[i].msg);
	}
}

/* A NUL inside the file (the table's strings stop at the first one). */
static void
test_nul_byte(void **state)
{
	static const char text[] = "[daemon]\nworkers = 1\n[listen.a\0b]\n";
	struct fx *f = *state;
	char err[1024], want[1024];
	om_conf_t *c = NULL;
	FILE *fp = fopen(f->file, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, sizeof(text) - 1, fp), sizeof(text) - 1);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(om_conf_load(f->file, &c, err, sizeof(err)), -EINVAL);
	assert_null(c);
	FMT(want, "%s:3: line contains a NUL byte", f->file);
	assert_string_equal(err, want);
}

static void
test_too_many_listeners(void **state)
{
	struct fx *f = *state;
	char text[4096], want[256];
	size_t n = 0;
	int i;
	om_conf_t *c;

	for (i = 0; i < 16; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
		    "[listen.l%d]\ntype = unix\npath = /tmp/om%d.sock\n", i, i);
	c = load_ok(f, text);
	assert_int_equal(c->nlisten, 16);
	assert_string_equal(c->listen[15].name, "l15");
	assert_string_equal(c->listen[15].path, "/tmp/om15.sock");
	om_conf_free(c);

	snprintf(text + n, sizeof(text) - n, "[listen.l16]\ntype = unix\npath = /tmp/om16.sock\n");
	FMT(want, "[listen.l16]: too many listeners (at most 16)");
	load_err(f, text, 49, want);
}

static void
test_long_line(void **state)
{
	struct fx *f = *state;
	char text[1024], msg[256];
	char err[1024];
	om_conf_t *c = NULL;

	/* inih's line buffer; a longer line must not be read as two. */
	FMT(text, "[daemon]\npid_file = /%0300d\n" LISTEN, 0);
	write_file(f->file, text);
	assert_int_equal(om_conf_load(f->file, &c, err, sizeof(err)), -EINVAL);
	assert_null(c);
	FMT(msg, "%s:2: line too long (at most ", f->file);
	assert_memory_equal(err, msg, strlen(msg));
	assert_non_null(strstr(err, " characters without comments)"));
}

static void
test_open_errors(void **state)
{
	struct fx *f = *state;
	char path[PATH_MAX], err[1024], want[PATH_MAX + 64];
	om_conf_t *c = (om_conf_t *)1;

	FMT(path, "%s/missing.conf", f->dir);
	assert_int_equal(om_conf_load(path, &c, err, sizeof(err)), -ENOENT);
	assert_null(c);
	FMT(want, "%s: cannot open: No such file or directory", path);
	assert_string_equal(err, want);

	/* A directory opens, but does not read. */
	c = (om_conf_t *)1;
	assert_int_equal(om_conf_load(f->dir, &c, err, sizeof(err)), -EISDIR);
	assert_null(c);
	FMT(want, "%s: cannot read: Is a directory", f->dir);
	assert_string_equal(err, want);

	/* A short or absent message buffer is no problem. */
	write_file(f->file, "[index]\ncapacity = 0\n");
	assert_int_equal(om_conf_load(f->file, &c, err, 8), -EINVAL);
	assert_int_equal(strlen(err), 7);
	assert_memory_equal(err, f->file, 7);
	assert_int_equal(om_conf_load(f->file, &c, NULL, 0), -EINVAL);
	assert_null(c);
}

/* The example beside the sources: found from this binary's location. */
static int
find_example(char *out, size_t n)
{
	char dir[PATH_MAX];
	ssize_t len = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	char *slash;

	if (len > 0) {
		dir[len] = '\0';
		while ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
			*slash = '\0';
			if ((size_t)snprintf(out, n, "%s/objmapper.conf.example", dir) < n &&
			    access(out, R_OK) == 0)
				return 0;
		}
	}
	/* __FILE__ is tests/unit/test_conf.c, relative to the source tree. */
	snprintf(out, n, "%.*s../../objmapper.conf.example",
	    (int)(strlen(__FILE__) - strlen("test_conf.c")), __FILE__);
	return access(out, R_OK) == 0 ? 0 : -1;
}

static void
test_example(void **state)
{
	static const char *const keys[][24] = {
		{ "[daemon]", "workers", "user", "group", "pid_file", "shutdown_timeout",
		    "max_connections", "max_files", NULL },
		{ "[log]", "target", "file", "level", NULL },
		{ "[index]", "capacity", "max_uri", "arena", "atime_resolution", "file", NULL },
		{ "[memory]", "path", "size", "reserve", "pack_max", NULL },
		{ "[persistent]", "path", "size", "reserve", "pack_max", "durability", NULL },
		{ "[cache]", "interval", "promote_hits", "promote_max_size", "evict_samples",
		    "max_metadata", "eviction", "scrub_rate", "scrub_interval", NULL },
		{ "[listen.local]", "type", "path", "mode", "owner", "group", "backlog",
		    "inline_threshold", "send_buffer", "allow_read", "allow_write", "idle_timeout",
		    "request_timeout", "min_rate", "max_object_size", "max_pipeline", "max_buffer", NULL },
		{ "[listen.tcp]", "type", "address", "port", "backlog", "inline_threshold",
		    "send_buffer", "allow_read", "allow_write", "idle_timeout", "request_timeout",
		    "min_rate", "max_object_size", "max_pipeline", "max_buffer", NULL },
		{ "[listen.udp]", "type", "address", "port", "allow_read", "allow_write",
		    "max_object_size", "max_datagram", "amplification", NULL },
		{ "[listen.http]", "type", "path", "mode", "allow_read", "allow_write",
		    "idle_timeout", "request_timeout", "max_object_size", "max_pipeline", "max_buffer",
		    "max_header", "serve", NULL },
	};
	char path[PATH_MAX], err[1024], *text, *sec, *end, *line;
	om_conf_t *c = NULL;
	FILE *fp;
	long size;
	size_t i, j;

	(void)state;
	if (find_example(path, sizeof(path)) != 0)
		fail_msg("objmapper.conf.example not found");
	if (om_conf_load(path, &c, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	/* It shows the defaults. */
	check_defaults(c);
	om_conf_free(c);

	/* Every key appears, in its section, as "key =" (perhaps commented out). */
	fp = fopen(path, "r");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	size = ftell(fp);
	rewind(fp);
	text = calloc(1, (size_t)size + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)size, fp), (size_t)size);
	fclose(fp);
	for (i = 0; i < OM_ARRAY_LEN(keys); i++) {
		/* The section: from its header line (perhaps commented out) to
		 * the next header line. */
		sec = NULL;
		for (line = text; line != NULL && sec == NULL; line = strchr(line + 1, '\n')) {
			const char *s = line == text ? line : line + 1;

			while (*s == ';')
				s++;
			if (strncmp(s, keys[i][0], strlen(keys[i][0])) == 0 && s[strlen(keys[i][0])] == '\n')
				sec = line;
		}
		if (sec == NULL)
			fail_msg("example: no %s", keys[i][0]);
		/* cppcheck-suppress nullPointerArithmetic ; fail_msg() does not return */
		for (end = strchr(sec + 1, '\n'); end != NULL; end = strchr(end + 1, '\n'))
			if (end[1] == '[' || (end[1] == ';' && end[2] == '['))
				break;
		if (end == NULL)
			end = text + size;
		/* The http listener's type says so. */
		if (strcmp(keys[i][0], "[listen.http]") == 0) {
			char *t = strstr(sec, "\n;type = http\n");

			if (t == NULL || t > end)
				fail_msg("example: [listen.http] without type = http");
		}
		for (j = 1; j < OM_ARRAY_LEN(keys[i]) && keys[i][j] != NULL; j++) {
			int found = 0;

			for (line = sec; line != NULL && line < end; line = strchr(line + 1, '\n')) {
				const char *s = line + 1;
				size_t kl = strlen(keys[i][j]);

				while (*s == ';' || *s == '#' || *s == ' ')
					s++;
				if (strncmp(s, keys[i][j], kl) == 0 && strncmp(s + kl, " =", 2) == 0)
					found = 1;
			}
			if (!found)
				fail_msg("example: no %s in %s", keys[i][j], keys[i][0]);
		}
	}
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_net_listeners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relative_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_path_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_users_and_groups, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syntax, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nul_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_listeners, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test(test_example),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
