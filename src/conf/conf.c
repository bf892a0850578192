/*
 * objmapperd's configuration file: an INI file read with inih into an
 * om_conf_t and checked completely before it is returned. Run by the
 * master, at start and on every reload.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/om_conf.h"
#include "core/om_core.h"

/*
 * Line numbers. Debian's libinih is built without INI_HANDLER_LINENO, so
 * its handler is not told which line it is handling (and defining the
 * option here would not change the library's calls). We therefore feed
 * inih through ini_parse_stream with our own reader, which hands it
 * exactly one physical line per call: inih's own count (the line it
 * returns for a syntax error) is then our count, and while the handler
 * runs, its line is the one the reader returned last. Nothing is read
 * twice and nothing is guessed.
 *
 * The reader also does the lexical work where inih would surprise a user
 * or where its behaviour depends on run-time knobs that Debian's build
 * exports (ini_allow_multiline, ini_max_line...), which we leave alone
 * because they are process-wide:
 * - it strips comments: ';' or '#' at the start of a line or after
 *   whitespace ("a;b" and "a#b" are values, "a ;b" and "a #b" are not);
 * - it strips leading whitespace, so an indented line is an ordinary line,
 *   never an inih continuation of the previous value;
 * - it refuses a line longer than inih's buffer (once comments are gone)
 *   instead of letting inih read it as two lines;
 * - it reads section headers itself, because inih tells the handler
 *   nothing about a section without keys: an empty [listen.x] must still
 *   count as a listener, and its header's line is where a missing
 *   required key is reported.
 * inih still splits "key = value" lines, trims them and reports lines it
 * cannot parse.
 */
#if INI_HANDLER_LINENO
#error "Debian's libinih calls the handler without a line number"
#endif

#define HOUR_MS (3600u * 1000u)
#define SYNTAX_ERROR "syntax error: expected \"key = value\" or \"[section]\""

enum conf_kind {
	K_UINT,     /* plain decimal in [min, max] */
	K_SIZE,     /* decimal with an optional K, M, G or T (powers of 1024) */
	K_SPACE,    /* a K_SIZE, or N% (1..100) of a filesystem: om_conf_space_t */
	K_DURATION, /* decimal with an optional ms, s, m or h; stored in ms */
	K_ENUM,     /* one of choices, stored as its index */
	K_PATH,     /* resolved against the file's directory */
	K_SOCKET,   /* a path that fits sun_path, unique among the listeners */
	K_MODE,     /* octal file mode */
	K_USER,     /* user name, into an om_conf_owner_t */
	K_GROUP,    /* group name, into an om_conf_owner_t */
	K_WORKERS,  /* "auto" or a K_UINT */
	K_LTYPE,    /* listener type */
	K_ADDRESS,  /* numeric IPv4 or IPv6 address */
	K_ACL,      /* allow list: who may read or write */
};

#define KEY_REQUIRED 0x1u
#define KEY_ZERO_OK  0x2u /* K_SIZE: 0 (the default) is allowed below min */
#define KEY_NONE_OK  0x4u /* K_PATH: "none" is kept as it is (no such file) */
#define KEY_AUTO     0x8u /* K_SIZE: "auto" is OM_CONF_SIZE_AUTO */
/* Listener keys: the types they belong to (none = every type). */
#define KEY_UNIX     0x10u
#define KEY_TCP      0x20u
#define KEY_UDP      0x40u
#define KEY_STREAM   (KEY_UNIX | KEY_TCP)
#define KEY_NET      (KEY_TCP | KEY_UDP)
#define KEY_TYPES    (KEY_UNIX | KEY_TCP | KEY_UDP)
#define KEY_HTTP     0x80u /* http listeners only */

struct conf_key {
	const char *name;
	enum conf_kind kind;
	unsigned flags;
	size_t off;  /* of the field in om_conf_t, or in om_conf_listen_t */
	size_t size; /* of the field */
	uint64_t min, max;
	const char *const *choices; /* K_ENUM: NULL-terminated, index = value */
};

#define FIELD(T, f) offsetof(T, f), sizeof(((T *)0)->f)
#define C(f) FIELD(om_conf_t, f)
#define L(f) FIELD(om_conf_listen_t, f)

/* Indexed by the enums' values, which these tie down. */
static const char *const log_targets[] = { "stderr", "syslog", "file", NULL };
static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const durabilities[] = { "none", "fsync", NULL };
static const char *const evictions[] = { "lru", "none", NULL };
static const char *const serves[] = { "objects", "metrics", NULL };
_Static_assert(OM_LOG_STDERR == 0 && OM_LOG_SYSLOG == 1 && OM_LOG_FILE == 2, "log_targets");
_Static_assert(OM_LOG_ERR == 0 && OM_LOG_WARN == 1 && OM_LOG_INFO == 2 &&
    OM_LOG_DEBUG == 3, "log_levels");
_Static_assert(OM_DURABLE_NONE == 0 && OM_DURABLE_FSYNC == 1, "durabilities");
_Static_assert(OM_EVICTION_LRU == 0 && OM_EVICTION_NONE == 1, "evictions");

static const struct conf_key daemon_keys[] = {
	{ "workers", K_WORKERS, 0, C(daemon.workers), 1, OM_CONF_WORKERS_MAX, NULL },
	{ "user", K_USER, 0, C(daemon.run_as), 0, 0, NULL },
	{ "group", K_GROUP, 0, C(daemon.run_as), 0, 0, NULL },
	{ "pid_file", K_PATH, 0, C(daemon.pid_file), 0, 0, NULL },
	{ "shutdown_timeout", K_DURATION, 0, C(daemon.shutdown_timeout_ms), 0, HOUR_MS, NULL },
	{ "max_connections", K_UINT, 0, C(daemon.max_connections), 1, 1000000, NULL },
	{ "max_files", K_UINT, KEY_ZERO_OK, C(daemon.max_files), 64, 1u << 24, NULL },
	{ NULL, 0, 0, 0, 0, 0, 0, NULL },
};

static const struct conf_key log_keys[] = {
	{ "target", K_ENUM, 0, C(log.target), 0, 0, log_targets },
	{ "file", K_PATH, 0, C(log.file), 0, 0, NULL },
	{ "level", K_ENUM, 0, C(log.level), 0, 0, log_levels },
	{ NULL, 0, 0, 0, 0, 0, 0, NULL },
};

static const struct conf_key index_keys[] = {
	{ "capacity", K_UINT, 0, C(index.capacity), 1, 100000000, NULL },
	{ "max_uri", K_UINT, 0, C(index.max_uri), 16, OM_IX_URI_MAX, NULL },
	{ "arena", K_SIZE, KEY_ZERO_OK, C(index.arena_bytes), 4096, OM_IX_ARENA_MAX, NULL },
	{ "atime_resolution", K_DURATION, 0, C(index.atime_res_ms), 16, HOUR_MS, NULL },
	{ "file", K_PATH, KEY_NONE_OK, C(index.file), 0, 0, NULL },
	{ NULL, 0, 0, 0, 0, 0, 0, NULL },
};

static const struct conf_key memory_keys[] = {
	{ "path", K_PATH, 0, C(memory.path), 0, 0, NULL },
	{ "size", K_SPACE, 0, C(memory.size), 0, UINT64_MAX, NULL },
	{ "reserve", K_SPACE, 0, C(memory.reserve), 0, UINT64_MAX, NULL },
	{ "pack_max", K_SIZE, 0, C(memory.pack_max), 0, OM_STORE_PACK_MAX, NULL },
	{ NULL, 0, 0, 0, 0, 0, 0, NULL },
};

static const struct conf_key persistent_keys[] = {
	{ "path", K_PATH, 0, C(persistent.path), 0, 0, NULL },
	{ "size", K_SPACE, 0, C(persistent.size), 0, UINT64_MAX, NULL },
	{ "reserve", K_SPACE, 0, C(persistent.reserve), 0, UINT64_MAX, NULL },
	{ "pack_max", K_SIZE, 0, C(persistent.pack_max), 0, OM_STORE_PACK_MAX, NULL },
	{ "durability", K_ENUM, 0, C(persistent.durability), 0, 0, durabilities },
	{ NULL, 0, 0, 0, 0, 0, 0, NULL },
};

static const struct conf_key cache_keys[] = {
	{ "interval", K_DURATION, 0, C(cache.interval_ms), 100, HOUR_MS, NULL },
	{ "promote_hits", K_UINT, 0, C(cache.promote_hits), 0, OM_IX_HITS_MAX, NULL },
	{ "promote_max_size", K_SIZE, 0, C(cache.promote_max_size), 0, UINT64_MAX, NULL },
	{ "evict_samples", K_UINT, 0, C(cache.evict_samples), 1, 64, NULL },
	{ "max_metadata", K_UINT, 0, C(cache.max_metadata), 0, OM_STORE_META_MAX, NULL },
	{ "open_files", K_UINT, 0, C(cache.open_files), 16, 1u << 24, NULL },
	{ "eviction", K_ENUM, 0, C(cache.eviction), 0, 0, evictions },
	{ "scrub_rate", K_SIZE, 0, C(cache.scrub_rate), 0, (uint64_t)1 << 40, NULL },
	{ "scrub_interval", K_DURATION, 0, C(cache.scrub_interval_ms), 0, 168 * HOUR_MS, NULL },
	{ NULL, 0, 0, 0, 0, 0, 0, NULL },
};

/* KEY_REQUIRED with types: required for those types only. */
static const struct conf_key listen_keys[] = {
	{ "type", K_LTYPE, KEY_REQUIRED, L(type), 0, 0, NULL },
	{ "path", K_SOCKET, KEY_REQUIRED | KEY_UNIX, L(path), 0, 0, NULL },
	{ "mode", K_MODE, KEY_UNIX, L(mode), 0, 07777, NULL },
	{ "owner", K_USER, KEY_UNIX, L(owner), 0, 0, NULL },
	{ "group", K_GROUP, KEY_UNIX, L(owner), 0, 0, NULL },
	{ "address", K_ADDRESS, KEY_NET, L(address), 0, 0, NULL },
	{ "port", K_UINT, KEY_REQUIRED | KEY_NET, L(port), 1, 65535, NULL },
	{ "backlog", K_UINT, KEY_STREAM, L(backlog), 1, 65535, NULL },
	{ "inline_threshold", K_SIZE, KEY_STREAM | KEY_AUTO, L(inline_threshold), 0, 64u << 20, NULL },
	{ "send_buffer", K_SIZE, KEY_STREAM, L(send_buffer), 0, 64u << 20, NULL },
	{ "allow_read", K_ACL, 0, L(allow_read), 0, 0, NULL },
	{ "allow_write", K_ACL, 0, L(allow_write), 0, 0, NULL },
	{ "idle_timeout", K_DURATION, KEY_STREAM, L(idle_timeout_ms), 0, 24 * HOUR_MS, NULL },
	{ "request_timeout", K_DURATION, KEY_STREAM, L(request_timeout_ms), 0, HOUR_MS, NULL },
	{ "min_rate", K_SIZE, KEY_STREAM, L(min_rate), 1024, 1u << 30, NULL },
	{ "max_object_size", K_SIZE, 0, L(max_object_size), 0, UINT64_MAX, NULL },
	{ "max_pipeline", K_UINT, KEY_STREAM, L(max_pipeline), 1, 65536, NULL },
	{ "max_buffer", K_SIZE, KEY_STREAM, L(max_buffer), 64u << 10, 1u << 30, NULL },
	{ "max_datagram", K_UINT, KEY_UDP, L(max_datagram), 512, 65507, NULL },
	{ "amplification", K_UINT, KEY_UDP, L(amplification), 1, 100, NULL },
	{ "max_header", K_SIZE, KEY_HTTP, L(max_header), 1024, 60u << 10, NULL },
	{ "serve", K_ENUM, KEY_HTTP, L(serve), 0, 0, serves },
	{ NULL, 0, 0, 0, 0, 0, 0, NULL },
};

/* The sections that appear once; listeners are handled apart. */
static const struct {
	const char *name;
	const struct conf_key *keys;
} sections[] = {
	{ "daemon", daemon_keys },
	{ "log", log_keys },
	{ "index", index_keys },
	{ "memory", memory_keys },
	{ "persistent", persistent_keys },
	{ "cache", cache_keys },
};
#define NSECTIONS ((int)OM_ARRAY_LEN(sections))
#define SEC_NONE   (-1)          /* before the first header */
#define SEC_LISTEN NSECTIONS

/* Keys per section, for the line each was first seen on (duplicates). */
#define KEYS_MAX 24
_Static_assert(OM_ARRAY_LEN(daemon_keys) <= KEYS_MAX + 1 &&
    OM_ARRAY_LEN(listen_keys) <= KEYS_MAX + 1 &&
    OM_ARRAY_LEN(cache_keys) <= KEYS_MAX + 1, "KEYS_MAX");

struct parse {
	om_conf_t *c;
	const char *file;        /* as given, for messages */
	char dir[PATH_MAX];      /* real path of the file's directory */
	FILE *fp;
	char *buf;               /* the physical line (getline) */
	size_t bufcap;
	unsigned line;           /* of the line the reader returned last */

	int sec;                 /* index in sections[], SEC_LISTEN or SEC_NONE */
	char secname[256];       /* as written, for messages */
	const struct conf_key *keys;
	unsigned *seen;          /* the current section's first lines per key */
	om_conf_listen_t *lis;   /* the current listener */
	unsigned sec_line[NSECTIONS];
	unsigned seen_sec[NSECTIONS][KEYS_MAX];
	unsigned seen_lis[OM_CONF_LISTEN_MAX][KEYS_MAX];

	int err;                 /* the first error, -errno; 0 = none yet */
	unsigned err_line;
	char *msg;
	size_t msglen;
};

/*
 * Records the error "FILE:LINE: message" (or "FILE: message" for line 0)
 * unless one is recorded already: the first error of a file is the one to
 * fix first, and later ones are often its consequences.
 */
OM_PRINTF(4, 5) static void
conf_fail(struct parse *p, unsigned line, int err, const char *fmt, ...)
{
	char m[768];
	va_list ap;

	OM_ASSERT(err < 0);
	if (p->err != 0)
		return;
	p->err = err;
	p->err_line = line;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	if (p->msg == NULL || p->msglen == 0)
		return;
	if (line != 0)
		snprintf(p->msg, p->msglen, "%s:%u: %s", p->file, line, m);
	else
		snprintf(p->msg, p->msglen, "%s: %s", p->file, m);
}

/* "FILE:LINE: [section] key: message" for the line being handled. */
OM_PRINTF(4, 5) static void
key_fail(struct parse *p, const char *key, int err, const char *fmt, ...)
{
	char m[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	conf_fail(p, p->line, err, "[%s] %s: %s", p->secname, key, m);
}

static void
put_uint(void *base, const struct conf_key *k, uint64_t v)
{
	char *f = (char *)base + k->off;

	/* The tables' ranges fit their fields: a mismatch is a bug here. */
	OM_ASSERT(k->size == 8 || (k->size == 4 && v <= UINT32_MAX));
	if (k->size == 8) {
		memcpy(f, &v, 8);
	} else {
		uint32_t x = (uint32_t)v;

		memcpy(f, &x, 4);
	}
}

/*
 * Digits, then what follows them in *end. 0, -EINVAL (no digits) or
 * -ERANGE (does not fit 64 bits). No sign, space or base prefix: strtoull
 * would take " -1" and "0x10".
 */
static int
scan_digits(const char *s, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	int big = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			big = 1;
		else
			v = v * 10 + d;
	}
	*out = v;
	*end = s;
	return big ? -ERANGE : 0;
}

static int
mul_check(uint64_t *v, uint64_t m)
{
	if (*v > UINT64_MAX / m)
		return -ERANGE;
	*v *= m;
	return 0;
}

/* "12" -> 12; "-12" is a number too, out of every range here. */
static int
parse_uint(const char *s, uint64_t *v)
{
	const char *end;
	int rc;

	rc = scan_digits(s[0] == '-' ? s + 1 : s, v, &end);
	if (rc == -EINVAL || *end != '\0')
		return -EINVAL;
	return s[0] == '-' ? -ERANGE : rc;
}

static int
parse_size(const char *s, uint64_t *v)
{
	const char *end;
	int rc, shift;

	if ((rc = scan_digits(s, v, &end)) == -EINVAL)
		return rc;
	switch (tolower((unsigned char)*end)) {
	case '\0': shift = 0; break;
	case 'k': shift = 10; break;
	case 'm': shift = 20; break;
	case 'g': shift = 30; break;
	case 't': shift = 40; break;
	default: return -EINVAL;
	}
	if (shift != 0 && end[1] != '\0')
		return -EINVAL;
	if (rc < 0)
		return rc;
	return mul_check(v, (uint64_t)1 << shift);
}

static int
parse_duration(const char *s, uint64_t *ms)
{
	const char *end;
	uint64_t m;
	int rc;

	if ((rc = scan_digits(s, ms, &end)) == -EINVAL)
		return rc;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		m = 1000;
	else if (strcmp(end, "ms") == 0)
		m = 1;
	else if (strcmp(end, "m") == 0)
		m = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		m = HOUR_MS;
	else
		return -EINVAL;
	if (rc < 0)
		return rc;
	return mul_check(ms, m);
}

/* A size or duration the way a user would write it, for messages. */
static void
fmt_value(const struct conf_key *k, uint64_t v, char *buf, size_t n)
{
	static const char units[] = "KMGT";
	int i;

	if (k->kind == K_SIZE && v != 0) {
		for (i = 3; i >= 0; i--) {
			uint64_t u = (uint64_t)1 << (10 * (i + 1));

			if (v % u == 0) {
				snprintf(buf, n, "%llu%c", (unsigned long long)(v / u), units[i]);
				return;
			}
		}
	} else if (k->kind == K_DURATION && v != 0) {
		if (v % HOUR_MS == 0)
			snprintf(buf, n, "%lluh", (unsigned long long)(v / HOUR_MS));
		else if (v % 60000 == 0)
			snprintf(buf, n, "%llum", (unsigned long long)(v / 60000));
		else if (v % 1000 == 0)
			snprintf(buf, n, "%llus", (unsigned long long)(v / 1000));
		else
			snprintf(buf, n, "%llums", (unsigned long long)v);
		return;
	}
	snprintf(buf, n, "%llu", (unsigned long long)v);
}

/* v: the value as written (it may not have fit 64 bits). */
static void
range_fail(struct parse *p, const struct conf_key *k, const char *v)
{
	char lo[32], hi[32];

	fmt_value(k, k->min, lo, sizeof(lo));
	fmt_value(k, k->max, hi, sizeof(hi));
	if (k->max != UINT64_MAX)
		key_fail(p, k->name, -EINVAL, "%s is out of range (%s%s..%s%s)", v,
		    (k->flags & KEY_ZERO_OK) ? "0, or " : "", lo, hi,
		    k->kind == K_WORKERS || (k->flags & KEY_AUTO) ? ", or auto" : "");
	else if (k->flags & KEY_ZERO_OK)
		key_fail(p, k->name, -EINVAL, "%s is out of range (0, or at least %s)", v, lo);
	else
		key_fail(p, k->name, -EINVAL, "%s is too large", v);
}

/*
 * An absolute path is kept as written; a relative one is appended to the
 * real path of the file's directory, so that a configuration can be moved
 * with the files it names. The target need not exist.
 */
static int
resolve_path(const struct parse *p, const char *v, char *out, size_t n)
{
	int len;

	if (v[0] == '/')
		len = snprintf(out, n, "%s", v);
	else
		len = snprintf(out, n, "%s%s%s", p->dir,
		    strcmp(p->dir, "/") == 0 ? "" : "/", v);
	return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

static char *
nss_buf(int which, size_t *n)
{
	long sz = sysconf(which);

	*n = sz > 0 ? (size_t)sz : 16384;
	return malloc(*n);
}

/* getpwnam_r and friends say "no such entry" in several ways. */
static int
nss_result(int rc, const void *res)
{
	if (res != NULL)
		return 0;
	if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM)
		return -ENOENT;
	/* Negative whatever the library returned: callers read the id only
	 * on 0 and take any other value as an error. */
	return rc > 0 ? -rc : -EIO;
}

/* What an NSS lookup asks for. */
enum nss_kind {
	NSS_USER,  /* a user by name: its uid and primary gid */
	NSS_GROUP, /* a group by name: its gid */
	NSS_GID,   /* a group by gid: its name */
};

/*
 * One lookup, with a buffer that grows while the library says ERANGE (up
 * to 1 MiB): 0 with the answer set, -ENOENT, or another -errno.
 */
static int
nss_lookup(enum nss_kind kind, const char *name, uid_t *uid, gid_t *gid, char *out, size_t len)
{
	struct passwd pw, *pwr = NULL;
	struct group gr, *grr = NULL;
	size_t n;
	char *buf = nss_buf(kind == NSS_USER ? _SC_GETPW_R_SIZE_MAX : _SC_GETGR_R_SIZE_MAX, &n);
	int rc = 0;

	while (buf != NULL) {
		if (kind == NSS_USER)
			rc = getpwnam_r(name, &pw, buf, n, &pwr);
		else if (kind == NSS_GROUP)
			rc = getgrnam_r(name, &gr, buf, n, &grr);
		else
			rc = getgrgid_r(*gid, &gr, buf, n, &grr);
		if (rc != ERANGE || n >= (1u << 20))
			break;
		free(buf);
		buf = malloc(n *= 2);
	}
	if (buf == NULL)
		return -ENOMEM;
	rc = nss_result(rc, kind == NSS_USER ? (const void *)pwr : (const void *)grr);
	if (rc == 0 && kind == NSS_USER) {
		*uid = pw.pw_uid;
		*gid = pw.pw_gid;
	} else if (rc == 0 && kind == NSS_GROUP) {
		*gid = gr.gr_gid;
	} else if (rc == 0 && (size_t)snprintf(out, len, "%s", gr.gr_name) >= len) {
		rc = -ENAMETOOLONG;
	}
	free(buf);
	return rc;
}

static int
lookup_user(const char *name, uid_t *uid, gid_t *gid)
{
	return nss_lookup(NSS_USER, name, uid, gid, NULL, 0);
}

static int
lookup_group(const char *name, gid_t *gid)
{
	return nss_lookup(NSS_GROUP, name, NULL, gid, NULL, 0);
}

static int
lookup_gid(gid_t gid, char *name, size_t len)
{
	return nss_lookup(NSS_GID, NULL, NULL, &gid, name, len);
}

static void
set_user(struct parse *p, const struct conf_key *k, om_conf_owner_t *o, const char *v)
{
	uid_t uid = 0;
	gid_t gid = 0;
	int rc;

	/* Empty: as if the key were absent, so that a template may say "user =". */
	if (*v == '\0') {
		o->user[0] = '\0';
		o->uid = (uid_t)-1;
		o->user_gid = (gid_t)-1;
		return;
	}
	if (strlen(v) >= sizeof(o->user)) {
		key_fail(p, k->name, -EINVAL, "user name too long");
		return;
	}
	rc = lookup_user(v, &uid, &gid);
	if (rc == -ENOENT) {
		key_fail(p, k->name, -EINVAL, "unknown user \"%s\"", v);
	} else if (rc < 0) {
		key_fail(p, k->name, rc, "cannot look up user \"%s\": %s", v, om_strerror(rc));
	} else {
		snprintf(o->user, sizeof(o->user), "%s", v);
		o->uid = uid;
		o->user_gid = gid;
	}
}

static void
set_group(struct parse *p, const struct conf_key *k, om_conf_owner_t *o, const char *v)
{
	gid_t gid = 0;
	int rc;

	if (*v == '\0') {
		o->group[0] = '\0';
		o->gid = (gid_t)-1;
		return;
	}
	if (strlen(v) >= sizeof(o->group)) {
		key_fail(p, k->name, -EINVAL, "group name too long");
		return;
	}
	rc = lookup_group(v, &gid);
	if (rc == -ENOENT) {
		key_fail(p, k->name, -EINVAL, "unknown group \"%s\"", v);
	} else if (rc < 0) {
		key_fail(p, k->name, rc, "cannot look up group \"%s\": %s", v, om_strerror(rc));
	} else {
		snprintf(o->group, sizeof(o->group), "%s", v);
		o->gid = gid;
	}
}

/* A path as written, less what does not change the file it names:
 * repeated slashes and "." segments (not "..": a link may be under it). */
static void
path_plain(const char *in, char *out, size_t n)
{
	size_t o = 0;

	while (*in != '\0' && o + 1 < n) {
		if (in[0] == '/' && in[1] == '/') {
			in++;
			continue;
		}
		if (in[0] == '/' && in[1] == '.' && (in[2] == '/' || in[2] == '\0')) {
			in += 2;
			continue;
		}
		out[o++] = *in++;
	}
	out[o] = '\0';
}

static void
set_socket(struct parse *p, const struct conf_key *k, const char *v)
{
	om_conf_t *c = p->c;
	char path[PATH_MAX], plain[PATH_MAX];
	unsigned i;

	if (*v == '\0') {
		key_fail(p, k->name, -EINVAL, "empty path");
		return;
	}
	if (resolve_path(p, v, path, sizeof(path)) != 0 ||
	    strlen(path) > OM_CONF_SOCKET_PATH_MAX) {
		key_fail(p, k->name, -EINVAL,
		    "\"%s\" is too long for a unix socket (%zu bytes, at most %d)",
		    path, strlen(path), OM_CONF_SOCKET_PATH_MAX);
		return;
	}
	path_plain(path, plain, sizeof(plain));
	for (i = 0; i < c->nlisten; i++) {
		om_conf_listen_t *o = &c->listen[i];
		char other[PATH_MAX];

		path_plain(o->path, other, sizeof(other));
		if (o != p->lis && strcmp(other, plain) == 0) {
			key_fail(p, k->name, -EINVAL, "\"%s\" is also the path of [listen.%s] (line %u)",
			    path, o->name, p->seen_lis[i][k - listen_keys]);
			return;
		}
	}
	memcpy(p->lis->path, path, strlen(path) + 1); /* fits: checked above */
}

static void
set_enum(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
	char names[128] = "";
	size_t i;

	for (i = 0; k->choices[i] != NULL; i++) {
		if (strcmp(v, k->choices[i]) == 0) {
			put_uint(base, k, i);
			return;
		}
	}
	for (i = 0; k->choices[i] != NULL; i++) {
		if (i > 0)
			strcat(names, ", ");
		strcat(names, k->choices[i]);
	}
	key_fail(p, k->name, -EINVAL, "\"%s\" is not one of %s", v, names);
}

static void
set_mode(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
	size_t n = strlen(v);

	/* 3 or 4 digits: "660" and "0660"; the leading 0 is not required. */
	if ((n == 3 || n == 4) && strspn(v, "01234567") == n) {
		mode_t m = (mode_t)strtoul(v, NULL, 8);

		memcpy((char *)base + k->off, &m, sizeof(m));
		return;
	}
	key_fail(p, k->name, -EINVAL,
	    "\"%s\" is not an octal mode (3 or 4 octal digits, e.g. 0660)", v);
}

/* A numeric address, IPv4 mapped into IPv6 (::ffff:a.b.c.d). */
static int
parse_address(const char *v, uint8_t addr[16], int *family)
{
	struct in_addr a4;

	if (inet_pton(AF_INET, v, &a4) == 1) {
		memset(addr, 0, 10);
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &a4, 4);
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, v, addr) == 1) {
		*family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

/* An id after "uid:" or "gid:", or a name after "user:" or "group:". */
static int
acl_id(struct parse *p, const struct conf_key *k, const char *what, const char *v, bool group,
    bool numeric, uint32_t *id)
{
	uint64_t n;
	uid_t uid;
	gid_t gid;
	int rc;

	if (numeric) {
		if (parse_uint(v, &n) != 0 || n >= UINT32_MAX) {
			key_fail(p, k->name, -EINVAL, "\"%s\": not a numeric id", what);
			return -EINVAL;
		}
		*id = (uint32_t)n;
		return 0;
	}
	rc = group ? lookup_group(v, &gid) : lookup_user(v, &uid, &gid);
	if (rc == -ENOENT) {
		key_fail(p, k->name, -EINVAL, "\"%s\": unknown %s", what, group ? "group" : "user");
		return rc;
	}
	if (rc != 0) {
		key_fail(p, k->name, rc, "\"%s\": cannot look it up: %s", what, om_strerror(rc));
		return rc;
	}
	*id = group ? (uint32_t)gid : (uint32_t)uid;
	return 0;
}

/*
 * An allow list: entries separated by spaces or commas. "any"; for Unix
 * listeners "user:NAME", "uid:N", "group:NAME", "gid:N"; for TCP and UDP
 * listeners "ADDRESS" or "ADDRESS/PREFIX". Which kinds fit the listener's
 * type is checked at the end (the type may come later in the section).
 */
static void
set_acl(struct parse *p, const struct conf_key *k, om_conf_acl_list_t *l, const char *v)
{
	char buf[512], *tok, *save = NULL;

	l->n = 0;
	if (strlen(v) >= sizeof(buf)) {
		key_fail(p, k->name, -EINVAL, "list too long");
		return;
	}
	snprintf(buf, sizeof(buf), "%s", v);
	for (tok = strtok_r(buf, " \t,", &save); tok != NULL; tok = strtok_r(NULL, " \t,", &save)) {
		om_conf_acl_t *e;
		char *colon = strchr(tok, ':'), *slash;

		if (l->n == OM_CONF_ACL_MAX) {
			key_fail(p, k->name, -EINVAL, "more than %d entries", OM_CONF_ACL_MAX);
			return;
		}
		e = &l->e[l->n];
		memset(e, 0, sizeof(*e));
		if (strcmp(tok, "any") == 0) {
			e->kind = OM_ACL_ANY;
		} else if (colon != NULL && (strncmp(tok, "user:", 5) == 0 || strncmp(tok, "uid:", 4) == 0 ||
		    strncmp(tok, "group:", 6) == 0 || strncmp(tok, "gid:", 4) == 0)) {
			bool group = tok[0] == 'g';

			e->kind = group ? OM_ACL_GID : OM_ACL_UID;
			if (acl_id(p, k, tok, colon + 1, group, tok[1] == 'i', &e->id) != 0)
				return;
		} else {
			uint64_t bits = 128;
			int family;

			e->kind = OM_ACL_NET;
			if ((slash = strchr(tok, '/')) != NULL)
				*slash = '\0';
			if (parse_address(tok, e->addr, &family) != 0) {
				if (slash != NULL)
					*slash = '/';
				key_fail(p, k->name, -EINVAL, "\"%s\" is not any, user:NAME, uid:N, group:NAME, "
				    "gid:N, or an address with an optional /PREFIX", tok);
				return;
			}
			if (slash != NULL && (parse_uint(slash + 1, &bits) != 0 ||
			    bits > (family == AF_INET ? 32u : 128u))) {
				*slash = '/';
				key_fail(p, k->name, -EINVAL, "\"%s\": bad prefix length", tok);
				return;
			}
			if (slash == NULL)
				bits = family == AF_INET ? 32 : 128;
			e->prefix = (unsigned)bits + (family == AF_INET ? 96u : 0u);
			/* The host bits must be zero: 10.1.2.3/8 is most likely a typo. */
			for (unsigned b = e->prefix; b < 128; b++) {
				if (e->addr[b / 8] & (0x80u >> (b % 8))) {
					if (slash != NULL)
						*slash = '/';
					key_fail(p, k->name, -EINVAL, "\"%s\": address has bits set after the "
					    "prefix", tok);
					return;
				}
			}
		}
		l->n++;
	}
	if (l->n == 0)
		key_fail(p, k->name, -EINVAL, "empty list (leave the key out, or say any)");
}

/* Parses v into the field of key k of base (the conf or a listener). */
static void
conf_set(struct parse *p, const struct conf_key *k, void *base, const char *v)
{
	uint64_t n;
	int rc;

	switch (k->kind) {
	case K_WORKERS:
		if (strcmp(v, "auto") == 0) {
			p->c->daemon.workers_auto = 1;
			return;
		}
		p->c->daemon.workers_auto = 0;
		if ((rc = parse_uint(v, &n)) == -EINVAL) {
			key_fail(p, k->name, -EINVAL, "\"%s\" is not a number or auto", v);
			return;
		}
		goto range;
	case K_UINT:
		if ((rc = parse_uint(v, &n)) == -EINVAL) {
			key_fail(p, k->name, -EINVAL, "\"%s\" is not a number", v);
			return;
		}
		goto range;
	case K_SIZE:
		if ((k->flags & KEY_AUTO) && strcmp(v, "auto") == 0) {
			put_uint(base, k, OM_CONF_SIZE_AUTO);
			return;
		}
		if ((rc = parse_size(v, &n)) == -EINVAL) {
			key_fail(p, k->name, -EINVAL,
			    "\"%s\" is not a size (a number with an optional K, M, G or T)", v);
			return;
		}
		goto range;
	case K_SPACE: {
		om_conf_space_t *sp = (om_conf_space_t *)(void *)((char *)base + k->off);
		size_t len = strlen(v);

		OM_ASSERT(k->size == sizeof(*sp));
		if (len > 1 && v[len - 1] == '%') {
			char num[24];

			if (len - 1 >= sizeof(num) || (memcpy(num, v, len - 1), num[len - 1] = '\0',
			    parse_uint(num, &n)) != 0 || n < 1 || n > 100) {
				key_fail(p, k->name, -EINVAL, "\"%s\" is not a share of the filesystem "
				    "(1%% to 100%%)", v);
				return;
			}
			sp->bytes = 0;
			sp->pct = (unsigned)n;
			return;
		}
		if ((rc = parse_size(v, &n)) == -EINVAL) {
			key_fail(p, k->name, -EINVAL, "\"%s\" is not a size (a number with an optional K, "
			    "M, G or T, or a share of the filesystem such as 50%%)", v);
			return;
		}
		if (rc < 0) {
			range_fail(p, k, v);
			return;
		}
		sp->bytes = n;
		sp->pct = 0;
		return;
	}
	case K_DURATION:
		if ((rc = parse_duration(v, &n)) == -EINVAL) {
			key_fail(p, k->name, -EINVAL,
			    "\"%s\" is not a duration (a number with an optional ms, s, m or h)", v);
			return;
		}
	range:
		if (rc < 0 || n > k->max ||
		    (n < k->min && !(n == 0 && (k->flags & KEY_ZERO_OK))))
			range_fail(p, k, v);
		else
			put_uint(base, k, n);
		return;
	case K_ENUM:
		set_enum(p, k, base, v);
		return;
	case K_PATH:
		if ((k->flags & KEY_NONE_OK) && strcmp(v, "none") == 0)
			snprintf((char *)base + k->off, k->size, "none");
		else if (*v == '\0')
			key_fail(p, k->name, -EINVAL, "empty path");
		else if (resolve_path(p, v, (char *)base + k->off, k->size) != 0)
			key_fail(p, k->name, -EINVAL, "path too long (at most %zu bytes)",
			    k->size - 1);
		return;
	case K_SOCKET:
		set_socket(p, k, v);
		return;
	case K_MODE:
		set_mode(p, k, base, v);
		return;
	case K_USER:
		set_user(p, k, (om_conf_owner_t *)(void *)((char *)base + k->off), v);
		return;
	case K_GROUP:
		set_group(p, k, (om_conf_owner_t *)(void *)((char *)base + k->off), v);
		return;
	case K_LTYPE:
		if (strcmp(v, "unix") == 0)
			p->lis->type = OM_CONF_LISTEN_UNIX;
		else if (strcmp(v, "tcp") == 0)
			p->lis->type = OM_CONF_LISTEN_TCP;
		else if (strcmp(v, "udp") == 0)
			p->lis->type = OM_CONF_LISTEN_UDP;
		else if (strcmp(v, "http") == 0)
			p->lis->type = OM_CONF_LISTEN_HTTP;
		else
			key_fail(p, k->name, -EINVAL,
			    "unsupported listener type '%s' (supported: unix, tcp, udp, http)", v);
		return;
	case K_ADDRESS:
		if (parse_address(v, p->lis->addr, &p->lis->family) != 0 ||
		    strlen(v) >= sizeof(p->lis->address))
			key_fail(p, k->name, -EINVAL,
			    "\"%s\" is not a numeric IPv4 or IPv6 address (e.g. 127.0.0.1, ::1, 0.0.0.0, ::)", v);
		else
			snprintf(p->lis->address, sizeof(p->lis->address), "%s", v);
		return;
	case K_ACL:
		set_acl(p, k, (om_conf_acl_list_t *)(void *)((char *)base + k->off), v);
		return;
	}
	OM_ASSERT(0);
}

static int
listener_name_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= OM_CONF_LISTEN_NAME_MAX &&
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

static void
listener_init(om_conf_listen_t *l, const char *name, unsigned line)
{
	memset(l, 0, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->mode = 0660;
	l->owner.uid = (uid_t)-1;
	l->owner.user_gid = (gid_t)-1;
	l->owner.gid = (gid_t)-1;
	l->backlog = 511;
	l->inline_threshold = OM_CONF_SIZE_AUTO;
	l->send_buffer = 2u << 20;
	snprintf(l->address, sizeof(l->address), "127.0.0.1");
	(void)parse_address(l->address, l->addr, &l->family);
	l->idle_timeout_ms = 60 * 1000;
	l->request_timeout_ms = 10 * 1000;
	l->min_rate = 256u << 10;
	l->max_object_size = 0;
	l->max_pipeline = 128;
	l->max_buffer = 4u << 20;
	l->max_datagram = 1472;
	l->amplification = 3;
	l->max_header = 8u << 10;
	l->line = line;
}

/* A section header on the current line; name is what is inside [ ]. */
static void
conf_section(struct parse *p, const char *name)
{
	om_conf_t *c = p->c;
	const char *lname;
	unsigned i;
	int s;

	snprintf(p->secname, sizeof(p->secname), "%s", name);
	p->sec = SEC_NONE;
	p->keys = NULL;
	p->seen = NULL;
	p->lis = NULL;
	for (s = 0; s < NSECTIONS; s++) {
		if (strcmp(name, sections[s].name) != 0)
			continue;
		if (p->sec_line[s] != 0) {
			conf_fail(p, p->line, -EINVAL, "[%s]: duplicate section (first on line %u)",
			    name, p->sec_line[s]);
			return;
		}
		p->sec_line[s] = p->line;
		p->sec = s;
		p->keys = sections[s].keys;
		p->seen = p->seen_sec[s];
		return;
	}
	if (strncmp(name, "listen.", 7) != 0) {
		conf_fail(p, p->line, -EINVAL, "[%s]: unknown section (sections: daemon, log, "
		    "index, memory, persistent, cache, listen.NAME)", name);
		return;
	}
	lname = name + 7;
	if (!listener_name_ok(lname)) {
		conf_fail(p, p->line, -EINVAL, "[%s]: bad listener name (1 to %d characters "
		    "of A-Z a-z 0-9 _ -)", name, OM_CONF_LISTEN_NAME_MAX);
		return;
	}
	for (i = 0; i < c->nlisten; i++) {
		if (strcmp(c->listen[i].name, lname) == 0) {
			conf_fail(p, p->line, -EINVAL,
			    "[%s]: duplicate section (first on line %u)", name, c->listen[i].line);
			return;
		}
	}
	if (c->nlisten == OM_CONF_LISTEN_MAX) {
		conf_fail(p, p->line, -EINVAL, "[%s]: too many listeners (at most %d)",
		    name, OM_CONF_LISTEN_MAX);
		return;
	}
	p->lis = &c->listen[c->nlisten];
	p->seen = p->seen_lis[c->nlisten];
	c->nlisten++;
	listener_init(p->lis, lname, p->line);
	p->sec = SEC_LISTEN;
	p->keys = listen_keys;
}

/* inih's handler: one "key = value" of the line the reader returned last. */
static int
conf_handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse *p = user;
	const struct conf_key *k;

	(void)section; /* the reader tracks sections, with their lines */
	if (p->err != 0)
		return 1;
	/* Empty name, or no '=' if someone set Debian's ini_allow_no_value. */
	if (value == NULL || *name == '\0') {
		conf_fail(p, p->line, -EINVAL, "%s", SYNTAX_ERROR);
		return 1;
	}
	if (p->sec == SEC_NONE) {
		conf_fail(p, p->line, -EINVAL, "%s: key outside a section", name);
		return 1;
	}
	for (k = p->keys; k->name != NULL; k++)
		if (strcmp(k->name, name) == 0)
			break;
	if (k->name == NULL) {
		key_fail(p, name, -EINVAL, "unknown key");
		return 1;
	}
	if (p->seen[k - p->keys] != 0) {
		key_fail(p, name, -EINVAL, "duplicate key (first on line %u)",
		    p->seen[k - p->keys]);
		return 1;
	}
	p->seen[k - p->keys] = p->line;
	conf_set(p, k, p->sec == SEC_LISTEN ? (void *)p->lis : (void *)p->c, value);
	/* Errors are ours to report (with their message): inih's return value
	 * is left to mean "syntax error on this line". */
	return 1;
}

/* Cuts a comment: ';' or '#' at the start or after whitespace. */
static void
strip_comment(char *s)
{
	char *q;

	for (q = s; *q != '\0'; q++) {
		if ((*q == ';' || *q == '#') && (q == s || isspace((unsigned char)q[-1]))) {
			*q = '\0';
			return;
		}
	}
}

/* inih's reader: one physical line per call (see the top of the file). */
static char *
conf_reader(char *str, int num, void *arg)
{
	struct parse *p = arg;
	ssize_t n;
	size_t len;
	char *s, *e;

	if (p->err != 0)
		return NULL; /* stops inih at the first error */
	errno = 0;
	n = getline(&p->buf, &p->bufcap, p->fp);
	if (n < 0) {
		if (ferror(p->fp)) {
			int rc = errno != 0 ? -errno : -EIO;

			conf_fail(p, 0, rc, "cannot read: %s", om_strerror(rc));
		}
		return NULL;
	}
	p->line++;
	s = p->buf;
	if (strlen(s) != (size_t)n) {
		conf_fail(p, p->line, -EINVAL, "line contains a NUL byte");
		return NULL;
	}
	if (p->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3; /* UTF-8 byte order mark */
	while (isspace((unsigned char)*s))
		s++;
	strip_comment(s);
	len = strlen(s);
	while (len > 0 && isspace((unsigned char)s[len - 1]))
		s[--len] = '\0';

	if (*s == '[') {
		e = strchr(s, ']');
		if (e == NULL) {
			conf_fail(p, p->line, -EINVAL, "syntax error: no ']' after \"%s\"", s);
			return NULL;
		}
		if (e[1] != '\0') {
			for (s = e + 1; isspace((unsigned char)*s); s++)
				;
			conf_fail(p, p->line, -EINVAL, "syntax error: \"%s\" after ']'", s);
			return NULL;
		}
		*e = '\0';
		conf_section(p, s + 1);
		*e = ']';
		if (p->err != 0)
			return NULL;
	}
	if (num < 1 || len >= (size_t)num) {
		conf_fail(p, p->line, -EINVAL, "line too long (at most %d characters "
		    "without comments)", num - 1);
		return NULL;
	}
	memcpy(str, s, len + 1);
	return str;
}

static const char *const type_names[] = { "", "unix", "tcp", "udp" };

static unsigned
type_flag(enum om_conf_listen_type t)
{
	return t == OM_CONF_LISTEN_UNIX ? KEY_UNIX : t == OM_CONF_LISTEN_TCP ? KEY_TCP : KEY_UDP;
}

/* An allow list's entries must suit the listener's type. */
static int
acl_check(struct parse *p, unsigned i, const char *key, const om_conf_acl_list_t *l)
{
	om_conf_listen_t *lis = &p->c->listen[i];
	const struct conf_key *k;

	/* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): key is always one of listen_keys */
	for (k = listen_keys; strcmp(k->name, key) != 0; k++)
		;
	for (unsigned j = 0; j < l->n; j++) {
		bool net = l->e[j].kind == OM_ACL_NET, cred = l->e[j].kind == OM_ACL_UID ||
		    l->e[j].kind == OM_ACL_GID;

		if ((lis->type == OM_CONF_LISTEN_UNIX && net) || (lis->type != OM_CONF_LISTEN_UNIX && cred)) {
			conf_fail(p, p->seen_lis[i][k - listen_keys], -EINVAL,
			    "[listen.%s] %s: entry %u: %s listeners take %s", lis->name, key, j + 1,
			    type_names[lis->type], lis->type == OM_CONF_LISTEN_UNIX ?
			    "any, user:NAME, uid:N, group:NAME or gid:N" : "any or ADDRESS[/PREFIX]");
			return -EINVAL;
		}
	}
	return 0;
}

/* A listener's keys against its type, and the defaults that depend on it. */
static int
listener_finish(struct parse *p, unsigned i)
{
	om_conf_t *c = p->c;
	om_conf_listen_t *l = &c->listen[i];
	const struct conf_key *k;

	if (p->seen_lis[i][0] == 0) {
		conf_fail(p, l->line, -EINVAL, "[listen.%s] type: required key missing", l->name);
		return -EINVAL;
	}
	if (l->type == OM_CONF_LISTEN_HTTP) {
		/* HTTP over a Unix socket (path) or TCP (port), not both. */
		unsigned path = 0, port = 0;

		for (k = listen_keys; k->name != NULL; k++) {
			if (strcmp(k->name, "path") == 0)
				path = p->seen_lis[i][k - listen_keys];
			else if (strcmp(k->name, "port") == 0)
				port = p->seen_lis[i][k - listen_keys];
		}
		if ((path != 0) == (port != 0)) {
			conf_fail(p, path ? path : l->line, -EINVAL, "[listen.%s] type http: give either "
			    "path (a Unix socket) or port (TCP)%s", l->name, path ? ", not both" : "");
			return -EINVAL;
		}
		l->http = 1;
		l->type = path ? OM_CONF_LISTEN_UNIX : OM_CONF_LISTEN_TCP;
	}
	for (k = listen_keys; k->name != NULL; k++) {
		unsigned seen = p->seen_lis[i][k - listen_keys];
		unsigned types = k->flags & KEY_TYPES;

		if (seen != 0 && (k->flags & KEY_HTTP) && !l->http) {
			conf_fail(p, seen, -EINVAL, "[listen.%s] %s: a key of http listeners only",
			    l->name, k->name);
			return -EINVAL;
		}

		if (seen != 0 && types != 0 && !(types & type_flag(l->type))) {
			conf_fail(p, seen, -EINVAL, "[listen.%s] %s: not a key of %s listeners",
			    l->name, k->name, type_names[l->type]);
			return -EINVAL;
		}
		if (seen == 0 && (k->flags & KEY_REQUIRED) && (types == 0 || (types & type_flag(l->type)))) {
			conf_fail(p, l->line, -EINVAL, "[listen.%s] %s: required key missing", l->name,
			    k->name);
			return -EINVAL;
		}
	}
	if (acl_check(p, i, "allow_read", &l->allow_read) != 0 ||
	    acl_check(p, i, "allow_write", &l->allow_write) != 0)
		return -EINVAL;
	if (l->allow_read.n == 0 && l->allow_write.n == 0) {
		/* Unix: the socket file's mode decides who connects. TCP, UDP:
		 * the loopback networks, whatever the address bound. */
		if (l->type == OM_CONF_LISTEN_UNIX) {
			l->allow_write.n = 1;
			l->allow_write.e[0].kind = OM_ACL_ANY;
		} else {
			int fam;

			l->allow_write.n = 2;
			l->allow_write.e[0].kind = OM_ACL_NET;
			(void)parse_address("127.0.0.0", l->allow_write.e[0].addr, &fam);
			l->allow_write.e[0].prefix = 96 + 8;
			l->allow_write.e[1].kind = OM_ACL_NET;
			(void)parse_address("::1", l->allow_write.e[1].addr, &fam);
			l->allow_write.e[1].prefix = 128;
		}
	}
	if (l->type != OM_CONF_LISTEN_UNIX) {
		l->path[0] = '\0';
		for (unsigned j = 0; j < i; j++) {
			const om_conf_listen_t *o = &c->listen[j];

			if (o->type == l->type && o->port == l->port && memcmp(o->addr, l->addr, 16) == 0) {
				conf_fail(p, l->line, -EINVAL, "[listen.%s]: %s %s port %u is also [listen.%s] "
				    "(line %u)", l->name, type_names[l->type], l->address, l->port, o->name,
				    o->line);
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* Checks that need the whole file, and defaults that depend on other keys. */
static void
conf_finish(struct parse *p)
{
	om_conf_t *c = p->c;
	om_conf_owner_t *d = &c->daemon.run_as;
	unsigned i;

	if (c->nlisten == 0) {
		conf_fail(p, 0, -EINVAL, "no [listen.NAME] section");
		return;
	}
	for (i = 0; i < c->nlisten; i++) {
		if (listener_finish(p, i) != 0)
			return;
	}

	/* The index is kept beside the pid file (in /run, a tmpfs, by
	 * default), unless the file names a place, or none. */
	if (c->index.file[0] == '\0') {
		const char *slash = strrchr(c->daemon.pid_file, '/');
		int dlen = slash == NULL ? 1 : slash == c->daemon.pid_file ? 1 : (int)(slash - c->daemon.pid_file);

		if ((size_t)dlen + sizeof("/objmapperd.index") > sizeof(c->index.file)) {
			conf_fail(p, 0, -EINVAL, "[index] file: the pid file's directory is too long to hold it");
			return;
		}
		snprintf(c->index.file, sizeof(c->index.file), "%.*s/objmapperd.index", dlen,
		    slash == NULL ? "." : c->daemon.pid_file);
	}
	if (c->daemon.workers_auto) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		c->daemon.workers = n < 1 ? 1 : n > OM_CONF_WORKERS_MAX ?
		    OM_CONF_WORKERS_MAX : (unsigned)n;
	}
	if (d->user[0] != '\0' && d->group[0] == '\0' && d->gid == (gid_t)-1) {
		d->gid = d->user_gid;
		/* The name is only for messages: a primary group without one is
		 * still a group, so a failed lookup leaves it empty. */
		if (lookup_gid(d->gid, d->group, sizeof(d->group)) != 0)
			d->group[0] = '\0';
	}
	for (i = 0; i < c->nlisten; i++) {
		om_conf_owner_t *o = &c->listen[i].owner;

		if (o->user[0] == '\0' && d->user[0] != '\0') {
			memcpy(o->user, d->user, sizeof(o->user));
			o->uid = d->uid;
			o->user_gid = d->user_gid;
			c->listen[i].owner_user_default = 1;
		}
		if (o->gid == (gid_t)-1 && d->gid != (gid_t)-1) {
			memcpy(o->group, d->group, sizeof(o->group));
			o->gid = d->gid;
			c->listen[i].owner_group_default = 1;
		}
	}
}

static void
conf_defaults(om_conf_t *c)
{
	c->daemon.workers_auto = 1;
	c->daemon.run_as.uid = (uid_t)-1;
	c->daemon.run_as.user_gid = (gid_t)-1;
	c->daemon.run_as.gid = (gid_t)-1;
	snprintf(c->daemon.pid_file, sizeof(c->daemon.pid_file), "%s",
	    "/run/objmapper/objmapperd.pid");
	c->daemon.shutdown_timeout_ms = 30 * 1000;
	c->daemon.max_connections = 1024;

	c->log.target = OM_LOG_SYSLOG;
	snprintf(c->log.file, sizeof(c->log.file), "%s", "/var/log/objmapper/objmapperd.log");
	c->log.level = OM_LOG_INFO;

	c->index.capacity = 1000000;
	c->index.max_uri = OM_IX_URI_MAX;
	c->index.arena_bytes = 0;
	c->index.atime_res_ms = 500;
	c->index.file[0] = '\0'; /* beside the pid file, unless the file says */

	snprintf(c->memory.path, sizeof(c->memory.path), "%s", "/run/objmapper/memory");
	c->memory.size = (om_conf_space_t){ 0, 50 };
	c->memory.reserve = (om_conf_space_t){ 0, 5 };
	c->memory.pack_max = OM_CONF_PACK_MAX_DEFAULT;

	snprintf(c->persistent.path, sizeof(c->persistent.path), "%s",
	    "/var/lib/objmapper/objects");
	c->persistent.size = (om_conf_space_t){ 0, 0 };
	c->persistent.reserve = (om_conf_space_t){ 0, 5 };
	c->persistent.pack_max = OM_CONF_PACK_MAX_DEFAULT;
	c->persistent.durability = OM_DURABLE_NONE;

	c->cache.interval_ms = 1000;
	c->cache.promote_hits = 4;
	c->cache.promote_max_size = 0;
	c->cache.evict_samples = 16;
	c->cache.max_metadata = OM_STORE_META_MAX;
	c->cache.open_files = 1024;
	c->cache.eviction = OM_EVICTION_LRU;
	c->cache.scrub_rate = 8u << 20;
	c->cache.scrub_interval_ms = HOUR_MS;
}

/* The real path of the directory that holds the file. */
static int
conf_dir(struct parse *p, const char *path)
{
	char d[PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		snprintf(d, sizeof(d), ".");
	else if (slash == path)
		snprintf(d, sizeof(d), "/");
	else if ((size_t)(slash - path) < sizeof(d))
		snprintf(d, sizeof(d), "%.*s", (int)(slash - path), path);
	else
		return -ENAMETOOLONG;
	if (realpath(d, p->dir) == NULL)
		return -errno;
	return 0;
}

int
om_conf_load(const char *path, om_conf_t **out, char *err, size_t errlen)
{
	struct parse *p;
	om_conf_t *c = NULL;
	int rc;

	*out = NULL;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	p = calloc(1, sizeof(*p));
	if (p == NULL || (c = calloc(1, sizeof(*c))) == NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: out of memory", path);
		free(p);
		return -ENOMEM;
	}
	p->c = c;
	p->file = path;
	p->msg = err;
	p->msglen = err != NULL ? errlen : 0;
	p->sec = SEC_NONE;
	conf_defaults(c);
	snprintf(c->file, sizeof(c->file), "%s", path);

	p->fp = fopen(path, "re");
	if (p->fp == NULL) {
		rc = -errno;
		conf_fail(p, 0, rc, "cannot open: %s", om_strerror(rc));
		goto done;
	}
	if ((rc = conf_dir(p, path)) != 0) {
		conf_fail(p, 0, rc, "cannot resolve its directory: %s", om_strerror(rc));
		goto done;
	}
	rc = ini_parse_stream(conf_reader, p, conf_handler, p);
	if (rc < 0) {
		conf_fail(p, 0, -ENOMEM, "out of memory");
	} else if (rc > 0 && (p->err == 0 || (p->err_line != 0 && (unsigned)rc < p->err_line))) {
		/* inih found a line it cannot parse before (or without) any
		 * error of ours: that one comes first. */
		p->err = 0;
		conf_fail(p, (unsigned)rc, -EINVAL, "%s", SYNTAX_ERROR);
	}
	if (p->err == 0)
		conf_finish(p);
done:
	if (p->fp != NULL)
		fclose(p->fp);
	free(p->buf);
	rc = p->err;
	free(p);
	if (rc != 0) {
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void
om_conf_free(om_conf_t *c)
{
	free(c);
}
