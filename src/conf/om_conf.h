/*
 * objmapperd's configuration: the INI file, parsed and checked completely
 * into a plain structure that the daemon reads directly. Loaded by the
 * master at start and on every reload (a new om_conf_t each time, swapped
 * in only if it loaded).
 */
#ifndef OM_CONF_H
#define OM_CONF_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/om_log.h"
#include "store/om_store.h"

#define OM_CONF_LISTEN_MAX      16
#define OM_CONF_LISTEN_NAME_MAX 32  /* bytes of NAME in [listen.NAME] */
#define OM_CONF_SOCKET_PATH_MAX 107 /* bytes of a socket path: sun_path less its NUL */
#define OM_CONF_NAME_MAX        256 /* user and group names, with the NUL */
#define OM_CONF_WORKERS_MAX     256
#define OM_CONF_SIZE_AUTO       UINT64_MAX /* a size key set to "auto" */

/*
 * Who a process runs as, or who owns a socket file. Each name was resolved
 * when the file was loaded; an empty name means "not set" and its id is
 * then (uid_t)-1 / (gid_t)-1, which chown() and fchown() take as
 * "unchanged".
 */
typedef struct {
	char user[OM_CONF_NAME_MAX];
	uid_t uid;
	gid_t user_gid;               /* the user's primary group (for initgroups) */
	char group[OM_CONF_NAME_MAX]; /* may be empty with gid set: a primary group
	                               * without a name in the group database */
	gid_t gid;
} om_conf_owner_t;

/* A size that is bytes, or with pct set (1..100) that share of the
 * filesystem that holds the directory. */
typedef struct {
	uint64_t bytes;
	unsigned pct;
} om_conf_space_t;

enum om_conf_eviction {
	OM_EVICTION_LRU = 0,  /* full tiers and a full index evict the least recently used */
	OM_EVICTION_NONE = 1, /* never: a PUT that does not fit is refused (NO_SPACE) */
};

/* What an http listener serves (serve =). */
enum om_conf_serve {
	OM_SERVE_OBJECTS = 0, /* the store: GET, HEAD, PUT, DELETE of objects */
	OM_SERVE_METRICS = 1, /* the statistics, at /metrics only (Prometheus) */
};

enum om_conf_listen_type {
	OM_CONF_LISTEN_UNIX = 1,
	OM_CONF_LISTEN_TCP = 2,
	OM_CONF_LISTEN_UDP = 3,
	OM_CONF_LISTEN_HTTP = 4, /* while parsing only: then UNIX or TCP with http set */
};

/*
 * One entry of a listener's allow_read or allow_write list: who it
 * matches. Unix listeners match the peer's credentials (SO_PEERCRED and
 * SO_PEERGROUPS); TCP and UDP listeners the peer's address.
 */
enum om_conf_acl_kind {
	OM_ACL_ANY = 1,   /* "any" */
	OM_ACL_UID,       /* "user:NAME" or "uid:N" */
	OM_ACL_GID,       /* "group:NAME" or "gid:N": primary or supplementary */
	OM_ACL_NET,       /* "ADDRESS[/PREFIX]", IPv4 as IPv4-mapped IPv6 */
};

#define OM_CONF_ACL_MAX 32 /* entries per list */

typedef struct {
	enum om_conf_acl_kind kind;
	uint32_t id;          /* UID, GID */
	uint8_t addr[16];     /* NET: network, IPv6 (IPv4 mapped: ::ffff:a.b.c.d) */
	unsigned prefix;      /* NET: bits of addr that must match, 0..128 */
} om_conf_acl_t;

typedef struct {
	unsigned n;
	om_conf_acl_t e[OM_CONF_ACL_MAX];
} om_conf_acl_list_t;

typedef struct {
	char name[OM_CONF_LISTEN_NAME_MAX + 1];   /* NAME of [listen.NAME] */
	enum om_conf_listen_type type;
	/* unix */
	char path[OM_CONF_SOCKET_PATH_MAX + 1];   /* absolute */
	mode_t mode;                              /* of the socket file; default 0660 */
	om_conf_owner_t owner;                    /* default: the daemon's user and group */
	int owner_user_default, owner_group_default; /* owner came from [daemon] */
	/* tcp, udp */
	char address[64];                         /* numeric IPv4 or IPv6; default 127.0.0.1 */
	uint8_t addr[16];                         /* address, IPv4 mapped into IPv6 */
	int family;                               /* AF_INET or AF_INET6 */
	uint32_t port;
	/* stream listeners */
	uint32_t backlog;                         /* listen(2); default 511 */
	uint64_t inline_threshold;                /* bytes, or OM_CONF_SIZE_AUTO (the
	                                           * default: chosen per connection) */
	uint64_t send_buffer;                     /* SO_SNDBUF of connections; default 2M,
	                                           * 0 = the kernel's default */
	/* who may do what: read = allow_read + allow_write, write = allow_write */
	om_conf_acl_list_t allow_read;
	om_conf_acl_list_t allow_write;
	/* limits */
	uint32_t idle_timeout_ms;                 /* default 60s, 0 = none */
	uint32_t request_timeout_ms;              /* default 10s, 0 = none */
	uint64_t min_rate;                        /* bytes/s; default 256K */
	uint64_t max_object_size;                 /* bytes; 0 = the tiers' sizes */
	uint32_t max_pipeline;                    /* requests in flight; default 128 */
	uint64_t max_buffer;                      /* queued output bytes; default 4M */
	/* udp */
	uint32_t max_datagram;                    /* response bytes; default 1472 */
	uint32_t amplification;                   /* response <= this x request; default 3 */
	/* http (type = http: a unix listener if it has a path, else tcp) */
	int http;                                 /* speaks HTTP/1.1, not objmapper frames */
	uint32_t max_header;                      /* bytes of a request head; default 8K */
	enum om_conf_serve serve;                 /* default OM_SERVE_OBJECTS */
	unsigned line;                            /* of its section header, for messages */
} om_conf_listen_t;

typedef struct {
	char file[PATH_MAX];                      /* the file it was loaded from, as given */

	struct {
		unsigned workers;                     /* 1..256, resolved even if auto */
		int workers_auto;                     /* workers = auto (the online CPUs) */
		om_conf_owner_t run_as;               /* user, group; empty = do not change */
		char pid_file[PATH_MAX];
		uint32_t shutdown_timeout_ms;         /* graceful stop and reload wait */
		uint32_t max_connections;             /* per worker */
		uint32_t max_files;                   /* RLIMIT_NOFILE; 0 = raise to the hard limit */
	} daemon;

	struct {
		enum om_log_target target;            /* default OM_LOG_SYSLOG */
		char file[PATH_MAX];                  /* for OM_LOG_FILE */
		enum om_log_level level;              /* default OM_LOG_INFO */
	} log;

	struct {
		uint32_t capacity;                    /* objects */
		uint32_t max_uri;                     /* bytes */
		uint64_t arena_bytes;                 /* 0 = 112 bytes per object */
		uint32_t atime_res_ms;
		char file[PATH_MAX];                  /* kept here across stops; "" = not kept */
	} index;

/* Objects of up to 16 KiB go into packs by default (ARCHITECTURE, "Packs"). */
#define OM_CONF_PACK_MAX_DEFAULT (16u * 1024)

	struct {
		char path[PATH_MAX];
		om_conf_space_t size;                 /* default 50%; 0 = no limit of its own */
		om_conf_space_t reserve;              /* default 5% */
		uint64_t pack_max;                    /* objects up to this go into packs */
	} memory;

	struct {
		char path[PATH_MAX];
		om_conf_space_t size;                 /* default 0 = no limit of its own */
		om_conf_space_t reserve;              /* default 5% */
		uint64_t pack_max;
		enum om_durability durability;
	} persistent;

	struct {
		uint32_t interval_ms;                 /* between manager passes */
		uint32_t promote_hits;                /* 0 = never promote */
		uint64_t promote_max_size;            /* 0 = a quarter of the memory tier */
		uint32_t evict_samples;
		uint32_t max_metadata;                /* bytes; 0 = PUTs carry no metadata */
		uint32_t open_files;                  /* descriptors cached per worker */
		enum om_conf_eviction eviction;       /* default OM_EVICTION_LRU */
		uint64_t scrub_rate;                  /* bytes/s read again by the scrub; 0 = off */
		uint32_t scrub_interval_ms;           /* from a pass's start to the next's, at least */
	} cache;

	unsigned nlisten;                         /* at least 1 */
	om_conf_listen_t listen[OM_CONF_LISTEN_MAX];
} om_conf_t;

/*
 * Loads and checks the file at path. Relative paths in it are resolved
 * against the real path of the file's directory; user and group names are
 * resolved to ids now, so that a reload fails, rather than a later
 * setuid(), when one has gone.
 *
 * 0 and *out (free with om_conf_free), or -errno: -EINVAL for a mistake
 * in the file, otherwise the system error (cannot open, cannot read, a
 * failed user database lookup, -ENOMEM). On error *out is NULL and err
 * holds one line, the first error of the file:
 *   "FILE:LINE: [section] key: message", or "FILE:LINE: [section]: message",
 *   or "FILE: message" for errors without a line (cannot open, no listener).
 */
int om_conf_load(const char *path, om_conf_t **out, char *err, size_t errlen);
void om_conf_free(om_conf_t *c);

#endif
