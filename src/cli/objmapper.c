/*
 * objmapper: the command-line client of objmapperd. Runs one command
 * through libobjmapper and turns its outcome into an exit status and at
 * most one line on stderr. Runs in the user's process.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "cli/cli_int.h"
#include "core/om_core.h"

#define PRINTF(a, b) __attribute__((format(printf, a, b)))

/* Exit statuses: objmapper(1) documents them, scripts test them. */
enum {
	EXIT_NOT_FOUND = 1,
	EXIT_USAGE = 2,
	EXIT_ERROR = 3,
	EXIT_DAMAGED = 4, /* verify: the bytes do not match their checksum */
};

#define GLOBAL_SYNOPSIS "objmapper [-s ADDRESS | [-u] -H HOST -p PORT] [-m auto|fdpass|copy|splice] [-t MS]"
#define DEFAULT_PORT "7070"

typedef struct cli cli_t;

struct cli {
	const char *socket;  /* NULL: the library's fallbacks */
	int mode;            /* enum om_mode, for get */
	int timeout_ms;      /* -t: bound of every wait for the daemon; -1: the library's */
	const char *cmd;     /* for messages: "objmapper: CMD URI: ..." */
	const char *uri;
	om_client_t *c;
};

typedef struct {
	const char *name;
	const char *synopsis;
	int (*run)(cli_t *, int, char **);
} command_t;

static const command_t *find_command(const char *name);

/* ---- messages ------------------------------------------------------------ */

/*
 * Writes "objmapper: [CMD [URI]: ]TEXT" as one line in one write. Bytes
 * below 0x20 (a server message, a URI typed by hand) become '?' so that a
 * failure is always exactly one line.
 */
static void
say(const cli_t *cl, const char *fmt, va_list ap)
{
	char line[2048];
	size_t n;

	n = (size_t)snprintf(line, sizeof(line), "objmapper: ");
	if (cl != NULL && cl->cmd != NULL) {
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s%s: ", cl->cmd,
		    cl->uri ? " " : "", cl->uri ? cl->uri : "");
		if (n >= sizeof(line))
			n = sizeof(line) - 1;
	}
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	n = strlen(line);
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	}
	if (n == sizeof(line) - 1)
		n--;
	line[n++] = '\n';
	(void)om_cli_write_all(STDERR_FILENO, line, n);
}

/* A local failure: exit status 3. */
PRINTF(2, 3) static int
fail(const cli_t *cl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say(cl, fmt, ap);
	va_end(ap);
	return EXIT_ERROR;
}

/*
 * A failure reported by libobjmapper. The daemon's answers already read
 * "NOT_FOUND: no such object"; the library's own failures ("connect to
 * PATH: ...") get what kind of failure they are in front.
 */
static int
fail_client(const cli_t *cl, int rc)
{
	const char *msg = cl->c ? om_client_message(cl->c) : "";
	const char *what = om_client_strerror(rc);

	/* "not an objmapper socket: ..." says it all. */
	if (-rc > OM_STATUS_MAX && *msg != '\0' && strncmp(msg, what, strlen(what)) != 0 &&
	    strncmp(msg, "not an objmapper socket: ", 25) != 0)
		fail(cl, "%s: %s", what, msg);
	else
		fail(cl, "%s", *msg != '\0' ? msg : what);
	return rc == -OM_STATUS_NOT_FOUND ? EXIT_NOT_FOUND : EXIT_ERROR;
}

/* A usage error: the message and the synopsis on one line, exit status 2. */
PRINTF(2, 3) static int
usage_error(const cli_t *cl, const char *fmt, ...)
{
	const command_t *cmd = cl->cmd ? find_command(cl->cmd) : NULL;
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (cmd != NULL)
		fail(cl, "%s; usage: " GLOBAL_SYNOPSIS " %s", msg, cmd->synopsis);
	else
		fail(cl, "%s; usage: " GLOBAL_SYNOPSIS " COMMAND [ARGS] (objmapper -h lists them)", msg);
	return EXIT_USAGE;
}

/* Option errors of getopt, which runs with opterr = 0 and a ':' so that
 * the messages follow ours. */
static int
option_error(const cli_t *cl, int ch)
{
	if (ch == ':')
		return usage_error(cl, "option -%c needs an argument", optopt);
	return usage_error(cl, "unknown option -%c", optopt);
}

/* Text built with stdio (open_memstream), then written in whole. */
static int
emit(const cli_t *cl, int fd, FILE *m, char **text, size_t *len)
{
	int rc;

	if (fclose(m) != 0 || *text == NULL) {
		free(*text);
		*text = NULL;
		return fail(cl, "%s", strerror(ENOMEM));
	}
	rc = om_cli_write_all(fd, *text, *len);
	free(*text);
	*text = NULL;
	if (rc != 0 && fd == STDOUT_FILENO)
		return fail(cl, "write to standard output: %s", strerror(-rc));
	return 0;
}

/* ---- arguments ------------------------------------------------------------ */

/* A decimal integer, nothing else around it. */
static int
parse_i64(const char *s, int64_t *v)
{
	long long x;
	char *end;

	if (*s != '-' && (*s < '0' || *s > '9'))
		return -1;
	errno = 0;
	x = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*v = x;
	return 0;
}

static int
parse_mode(const char *s, int *mode)
{
	static const char *const names[] = { "auto", "fdpass", "copy", "splice" };
	static const int modes[] = { OM_MODE_AUTO, OM_MODE_FDPASS, OM_MODE_COPY, OM_MODE_SPLICE };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*mode = modes[i];
			return 0;
		}
	}
	return -1;
}

/* Checks the operands of a command: min..max of them after the options. */
static int
operands(cli_t *cl, int argc, char **argv, int min, int max)
{
	if (argc < min)
		return usage_error(cl, "missing URI");
	if (argc > max)
		return usage_error(cl, "unexpected argument %s", argv[max]);
	if (min > 0)
		cl->uri = argv[0];
	return 0;
}

/* Parses a command's options (argv[0] is the command's name); an unknown
 * or incomplete option is reported here and returned as '?'. */
static int
next_option(cli_t *cl, int argc, char **argv, const char *opts)
{
	int ch = getopt(argc, argv, opts);

	if (ch == '?' || ch == ':') {
		option_error(cl, ch);
		return '?';
	}
	return ch;
}

/* A command without options: getopt still runs so that "--" works and a
 * stray option is refused rather than taken as a URI. */
static int
no_options(cli_t *cl, int *argc, char ***argv)
{
	optind = 0; /* 0, not 1: glibc then starts a new scan */
	if (next_option(cl, *argc, *argv, "+:") != -1)
		return EXIT_USAGE;
	*argc -= optind;
	*argv += optind;
	return 0;
}

static int
connect_daemon(cli_t *cl)
{
	/* Received descriptors are read only at explicit offsets (sendfile,
	 * splice, pread with an offset), so the daemon may share them. */
	int rc;

	if (cl->timeout_ms < 0) {
		rc = om_client_connect(cl->socket, OM_CLIENT_OFFSET_READS, &cl->c);
	} else {
		rc = om_client_connect_timeout(cl->socket, OM_CLIENT_OFFSET_READS, cl->timeout_ms, &cl->c);
		if (rc == 0)
			om_client_set_timeout(cl->c, cl->timeout_ms);
	}
	return rc != 0 ? fail_client(cl, rc) : 0;
}

/* ---- object fields ------------------------------------------------------- */

static void
put_time(FILE *m, const char *name, int64_t t, const char *zero)
{
	time_t tt = (time_t)t;
	char iso[64];
	struct tm tm;

	fprintf(m, "%-9s ", name);
	if (t == 0)
		fprintf(m, "%s\n", zero);
	else if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		fprintf(m, "%lld\n", (long long)t);
	else
		fprintf(m, "%lld (%s)\n", (long long)t, iso);
}

/*
 * The metadata's length, then the blob quoted as C text if it is text
 * (HTTP headers, with their CR LF written \r\n so the field stays on one
 * line), else in hex.
 */
static void
put_meta(FILE *m, const unsigned char *meta, uint32_t len)
{
	int text = 1;

	fprintf(m, "%-9s %u", "metadata:", len);
	for (uint32_t i = 0; i < len && text; i++)
		text = (meta[i] >= 0x20 && meta[i] < 0x7f) || meta[i] == '\t' || meta[i] == '\r' ||
		    meta[i] == '\n';
	if (len > 0 && text) {
		fputs(" \"", m);
		for (uint32_t i = 0; i < len; i++) {
			switch (meta[i]) {
			case '\t': fputs("\\t", m); break;
			case '\r': fputs("\\r", m); break;
			case '\n': fputs("\\n", m); break;
			case '"': fputs("\\\"", m); break;
			case '\\': fputs("\\\\", m); break;
			default: fputc(meta[i], m); break;
			}
		}
		fputc('"', m);
	} else if (len > 0) {
		fputs(" hex ", m);
		for (uint32_t i = 0; i < len; i++)
			fprintf(m, "%02x", meta[i]);
	}
	fputc('\n', m);
}

/* stat's output, and get -i's on stderr. */
static int
print_info(const cli_t *cl, int fd, const om_info_t *info, const void *meta, uint32_t meta_len)
{
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);

	if (m == NULL)
		return fail(cl, "%s", strerror(errno));
	fprintf(m, "%-9s %s\n", "uri:", cl->uri);
	fprintf(m, "%-9s %llu\n", "size:", (unsigned long long)info->size);
	fprintf(m, "%-9s %llu\n", "id:", (unsigned long long)info->id);
	fprintf(m, "%-9s %08x\n", "crc:", (unsigned)info->crc);
	if (info->tier == OM_TIER_MEMORY || info->tier == OM_TIER_PERSISTENT)
		fprintf(m, "%-9s %s\n", "tier:", info->tier == OM_TIER_MEMORY ? "memory" : "persistent");
	else
		fprintf(m, "%-9s unknown (%d)\n", "tier:", info->tier);
	put_time(m, "expires:", info->expires, "never");
	/* mtime is 0 only if the daemon did not send it. */
	put_time(m, "mtime:", info->mtime, "unknown");
	put_meta(m, meta, meta_len);
	return emit(cl, fd, m, &text, &len);
}

/* ---- commands ------------------------------------------------------------ */

static int
cmd_put(cli_t *cl, int argc, char **argv)
{
	om_put_opts_t po = { 0 };
	const char *meta_file = NULL, *file, *src;
	int64_t rel = -1, at = -1;
	void *meta = NULL, *data = NULL;
	size_t len = 0;
	struct stat st;
	int fd = -1, ch, rc, by_fd;

	optind = 0;
	while ((ch = next_option(cl, argc, argv, "+:x:X:EM:")) != -1) {
		switch (ch) {
		case 'x':
			if (parse_i64(optarg, &rel) != 0 || rel < 0)
				return usage_error(cl, "-x wants seconds (a number >= 0), not %s", optarg);
			break;
		case 'X':
			if (parse_i64(optarg, &at) != 0 || at < 0)
				return usage_error(cl, "-X wants unix seconds (a number >= 0), not %s", optarg);
			break;
		case 'E':
			po.flags |= OM_PUT_EPHEMERAL;
			break;
		case 'M':
			/* "@FILE" reads the blob from FILE, like curl's -d @FILE. */
			meta_file = optarg[0] == '@' ? optarg + 1 : NULL;
			po.meta = optarg[0] == '@' ? NULL : optarg;
			po.meta_len = optarg[0] == '@' ? 0 : (uint32_t)strnlen(optarg, OM_PROTO_META_MAX + 1);
			break;
		default:
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if ((rc = operands(cl, argc, argv, 1, 2)) != 0)
		return rc;
	if (rel >= 0 && at >= 0)
		return usage_error(cl, "-x and -X exclude each other");
	file = argc > 1 ? argv[1] : NULL;
	src = file ? file : "standard input";
	if (rel >= 0) {
		int64_t now = (int64_t)time(NULL);

		if (rel > INT64_MAX - now)
			return usage_error(cl, "-x %lld is too far in the future", (long long)rel);
		po.expires = now + rel;
	} else if (at >= 0) {
		po.expires = at;
	}

	if (meta_file != NULL) {
		int mfd = open(meta_file, O_RDONLY | O_CLOEXEC);

		if (mfd < 0)
			return fail(cl, "cannot open %s: %s", meta_file, strerror(errno));
		rc = om_cli_read_all(mfd, OM_PROTO_META_MAX, &meta, &len);
		close(mfd);
		if (rc == -EFBIG)
			return fail(cl, "metadata in %s is longer than %u bytes", meta_file,
			    OM_PROTO_META_MAX);
		if (rc != 0)
			return fail(cl, "read %s: %s", meta_file, strerror(-rc));
		po.meta = meta;
		po.meta_len = (uint32_t)len;
	} else if (po.meta_len > OM_PROTO_META_MAX) {
		return fail(cl, "metadata is longer than %u bytes", OM_PROTO_META_MAX);
	}

	if (file != NULL && (fd = open(file, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = fail(cl, "cannot open %s: %s", file, strerror(errno));
		goto out;
	}
	if (fstat(file ? fd : STDIN_FILENO, &st) != 0) {
		rc = fail(cl, "cannot stat %s: %s", src, strerror(errno));
		goto out;
	}
	/*
	 * The daemon copies a descriptor's bytes from offset 0. A standard
	 * input that a shell has already read from must go on from its
	 * offset, and an empty "regular" file (/proc) may still have bytes:
	 * those are read here instead.
	 */
	by_fd = S_ISREG(st.st_mode) && st.st_size > 0 &&
	    (file != NULL || lseek(STDIN_FILENO, 0, SEEK_CUR) == 0);
	if ((rc = connect_daemon(cl)) != 0)
		goto out;
	if (by_fd) {
		rc = om_client_put_fd(cl->c, cl->uri, file ? fd : STDIN_FILENO, (uint64_t)st.st_size,
		    &po, NULL);
	} else {
		uint64_t max = om_client_caps(cl->c)->max_object;

		/* Stop a runaway pipe at the daemon's limit, not at our memory's. */
		rc = om_cli_read_all(file ? fd : STDIN_FILENO, max ? max : UINT64_MAX, &data, &len);
		if (rc == -EFBIG) {
			rc = fail(cl, "%s holds more than the daemon's largest object, %llu bytes", src,
			    (unsigned long long)max);
			goto out;
		}
		if (rc != 0) {
			rc = fail(cl, "read %s: %s", src, strerror(-rc));
			goto out;
		}
		rc = om_client_put(cl->c, cl->uri, data, len, &po, NULL);
	}
	if (rc != 0)
		rc = fail_client(cl, rc);
out:
	if (fd >= 0)
		close(fd);
	free(data);
	free(meta);
	return rc;
}

static int
cmd_get(cli_t *cl, int argc, char **argv)
{
	om_object_t obj = { .fd = -1 };
	const char *file, *dst;
	int ch, rc, info = 0, out = STDOUT_FILENO;

	optind = 0;
	while ((ch = next_option(cl, argc, argv, "+:i")) != -1) {
		if (ch != 'i')
			return EXIT_USAGE;
		info = 1;
	}
	argc -= optind;
	argv += optind;
	if ((rc = operands(cl, argc, argv, 1, 2)) != 0)
		return rc;
	file = argc > 1 ? argv[1] : NULL;
	dst = file ? file : "standard output";
	if ((rc = connect_daemon(cl)) != 0)
		return rc;
	rc = om_client_get(cl->c, cl->uri, cl->mode, info ? OM_GET_WANT_META : 0, &obj);
	if (rc != 0)
		return fail_client(cl, rc);
	/* Opened only now: a missing object leaves an existing FILE alone. */
	if (file != NULL && (out = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666)) < 0) {
		rc = fail(cl, "cannot open %s: %s", file, strerror(errno));
		goto out;
	}
	if (obj.fd >= 0)
		rc = om_cli_copy_fd(out, obj.fd, obj.len);
	else
		rc = om_cli_write_all(out, obj.data, (size_t)obj.len);
	if (rc == -ENODATA) {
		rc = fail(cl, "the object's descriptor holds fewer than %llu bytes",
		    (unsigned long long)obj.len);
		goto out;
	}
	if (rc != 0) {
		rc = fail(cl, "write to %s: %s", dst, strerror(-rc));
		goto out;
	}
	if (file != NULL) {
		/* Some file systems (NFS) report a failed write only here. */
		rc = close(out);
		out = -1;
		if (rc != 0) {
			rc = fail(cl, "write to %s: %s", dst, strerror(errno));
			goto out;
		}
	}
	if (info)
		rc = print_info(cl, STDERR_FILENO, &obj.info, obj.meta, obj.meta_len);
out:
	if (file != NULL && out >= 0)
		close(out);
	om_object_free(&obj);
	return rc;
}

static int
cmd_delete(cli_t *cl, int argc, char **argv)
{
	int rc;

	if ((rc = no_options(cl, &argc, &argv)) != 0 || (rc = operands(cl, argc, argv, 1, 1)) != 0 ||
	    (rc = connect_daemon(cl)) != 0)
		return rc;
	if ((rc = om_client_delete(cl->c, cl->uri)) != 0)
		return fail_client(cl, rc);
	return 0;
}

static int
cmd_stat(cli_t *cl, int argc, char **argv)
{
	om_info_t info;
	void *meta = NULL;
	uint32_t meta_len = 0;
	int rc;

	if ((rc = no_options(cl, &argc, &argv)) != 0 || (rc = operands(cl, argc, argv, 1, 1)) != 0 ||
	    (rc = connect_daemon(cl)) != 0)
		return rc;
	rc = om_client_stat(cl->c, cl->uri, OM_GET_WANT_META, &info, &meta, &meta_len);
	if (rc != 0)
		return fail_client(cl, rc);
	rc = print_info(cl, STDOUT_FILENO, &info, meta, meta_len);
	free(meta);
	return rc;
}

/* stats: the daemon's lines as a table or as JSON, or its Prometheus text
 * as it came. */
static int
cmd_stats(cli_t *cl, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	char *stats = NULL, *text = NULL;
	int format = 0, ch, rc;
	size_t len = 0;
	FILE *m;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+:", longopts, NULL)) != -1) {
		if (ch == 'j' || ch == 'p') {
			if (format != 0 && format != ch)
				return usage_error(cl, "--json and --prometheus exclude each other");
			format = ch;
		} else if (strncmp(argv[optind - 1], "--", 2) == 0) {
			/* A long option has no optopt letter to show; it is set
			 * only for a known one given an argument. */
			return usage_error(cl, optopt ? "option %s takes no argument" : "unknown option %s",
			    argv[optind - 1]);
		} else {
			return option_error(cl, ch);
		}
	}
	argc -= optind;
	argv += optind;
	if ((rc = operands(cl, argc, argv, 0, 0)) != 0 || (rc = connect_daemon(cl)) != 0)
		return rc;
	rc = om_client_stats_ex(cl->c, format == 'p' ? OM_STATS_PROMETHEUS : 0, &stats);
	if (rc != 0)
		return fail_client(cl, rc);
	if (format == 'p') {
		if ((rc = om_cli_write_all(STDOUT_FILENO, stats, strlen(stats))) != 0)
			rc = fail(cl, "write to standard output: %s", strerror(-rc));
	} else if ((m = open_memstream(&text, &len)) == NULL) {
		rc = fail(cl, "%s", strerror(errno));
	} else if (format == 'j' && om_cli_stats_json(m, stats) != 0) {
		fclose(m);
		free(text);
		rc = fail(cl, "%s", strerror(ENOMEM));
	} else {
		if (format != 'j')
			om_cli_stats_table(m, stats);
		rc = emit(cl, STDOUT_FILENO, m, &text, &len);
	}
	free(stats);
	return rc;
}

static int
cmd_ping(cli_t *cl, int argc, char **argv)
{
	struct timespec t0, t1;
	char line[64];
	int64_t ns;
	int rc, n;

	if ((rc = no_options(cl, &argc, &argv)) != 0 || (rc = operands(cl, argc, argv, 0, 0)) != 0 ||
	    (rc = connect_daemon(cl)) != 0)
		return rc;
	/* The round trip of PING alone: connecting and HELLO are done. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = om_client_ping(cl->c);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc != 0)
		return fail_client(cl, rc);
	ns = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
	n = snprintf(line, sizeof(line), "ok %lld us\n", (long long)((ns + 500) / 1000));
	if ((rc = om_cli_write_all(STDOUT_FILENO, line, (size_t)n)) != 0)
		return fail(cl, "write to standard output: %s", strerror(-rc));
	return 0;
}

/* CRC32C of len bytes of fd (from offset 0), or of data. */
static int
crc_of(const om_object_t *obj, uint32_t *crc, uint64_t *got)
{
	static uint8_t buf[1 << 18];

	*crc = 0;
	*got = 0;
	if (obj->fd < 0) {
		*crc = om_crc32c(0, obj->data, (size_t)obj->len);
		*got = obj->len;
		return 0;
	}
	for (;;) {
		ssize_t n = pread(obj->fd, buf, sizeof(buf), (off_t)*got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		*crc = om_crc32c(*crc, buf, (size_t)n);
		*got += (uint64_t)n;
	}
}

/*
 * verify URI: reads the object (by descriptor where the transport passes
 * them, so that the daemon reads nothing) and compares its CRC32C with the
 * one stored with it; a damaged object is reported to the daemon, which
 * takes it out of service. verify with no URI: a scrub pass starts.
 */
static int
cmd_verify(cli_t *cl, int argc, char **argv)
{
	om_object_t obj = { .fd = -1 };
	char line[512];
	uint64_t got;
	uint32_t crc;
	int rc, n;

	if ((rc = no_options(cl, &argc, &argv)) != 0 || (rc = operands(cl, argc, argv, 0, 1)) != 0 ||
	    (rc = connect_daemon(cl)) != 0)
		return rc;
	cl->uri = argc > 0 ? argv[0] : NULL;
	if (argc == 0) {
		if ((rc = om_client_verify(cl->c, NULL, NULL)) != 0)
			return fail_client(cl, rc);
		n = snprintf(line, sizeof(line), "a scrub pass over the store started "
		    "(scrub_passes_total counts the passes done, objects_damaged_total what they found)\n");
		return om_cli_write_all(STDOUT_FILENO, line, (size_t)n) == 0 ? 0 :
		    fail(cl, "write to standard output: %s", strerror(errno));
	}
	rc = om_client_get(cl->c, cl->uri, cl->mode, OM_GET_NO_TOUCH, &obj);
	/* Bytes the daemon read itself (inline) it checked itself. */
	if (rc == -OM_STATUS_INTERNAL && strncmp(om_client_message(cl->c), "the object is damaged", 21) == 0) {
		(void)fail_client(cl, rc);
		return EXIT_DAMAGED;
	}
	if (rc != 0)
		return fail_client(cl, rc);
	rc = crc_of(&obj, &crc, &got);
	if (rc != 0) {
		rc = fail(cl, "read %s: %s", cl->uri, strerror(-rc));
	} else if (got == obj.len && crc == obj.info.crc) {
		n = snprintf(line, sizeof(line), "ok %s: %llu bytes, CRC32C %08x\n", cl->uri,
		    (unsigned long long)got, crc);
		if (om_cli_write_all(STDOUT_FILENO, line, (size_t)n) != 0)
			rc = fail(cl, "write to standard output: %s", strerror(errno));
	} else {
		/* The daemon checks it again itself and quarantines it. */
		int vr = om_client_verify(cl->c, cl->uri, NULL);

		(void)fail(cl, "%s is damaged: %llu bytes with CRC32C %08x, stored as %llu bytes with CRC32C "
		    "%08x; %s", cl->uri, (unsigned long long)got, crc, (unsigned long long)obj.len,
		    obj.info.crc, vr == 0 ? "reported to the daemon, which takes it out of service" :
		    om_client_message(cl->c));
		rc = EXIT_DAMAGED;
	}
	om_object_free(&obj);
	return rc;
}

/* ls: one entry per line, as the pages give them, written page by page (a
 * listing of millions of objects needs no memory for all of them). */
typedef struct {
	FILE *m;
	int long_form;
} ls_t;

static int
ls_entry(void *arg, const om_entry_t *e)
{
	ls_t *l = arg;

	if (l->long_form) {
		time_t tt = (time_t)e->info.expires;
		char when[32] = "never";
		struct tm tm;

		if (e->info.expires != 0 && (gmtime_r(&tt, &tm) == NULL ||
		    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0))
			snprintf(when, sizeof(when), "%lld", (long long)e->info.expires);
		fprintf(l->m, "%12llu  %-20s  %-15s  ", (unsigned long long)e->info.size, when,
		    e->info.tier == OM_TIER_MEMORY ? "memory" : e->copy ? "persistent+copy" : "persistent");
	}
	fwrite(e->uri, 1, e->uri_len, l->m);
	fputc('\n', l->m);
	return 0;
}

static int
cmd_ls(cli_t *cl, int argc, char **argv)
{
	ls_t l = { 0 };
	uint64_t cursor = 0;
	const char *prefix;
	int ch, rc;

	optind = 0;
	while ((ch = next_option(cl, argc, argv, "+:l")) != -1) {
		if (ch != 'l')
			return EXIT_USAGE;
		l.long_form = 1;
	}
	argc -= optind;
	argv += optind;
	if (argc > 1)
		return usage_error(cl, "unexpected argument %s", argv[1]);
	prefix = argc > 0 ? argv[0] : "";
	cl->uri = argc > 0 ? argv[0] : NULL;
	if ((rc = connect_daemon(cl)) != 0)
		return rc;
	do {
		char *text = NULL;
		size_t len = 0;

		if ((l.m = open_memstream(&text, &len)) == NULL)
			return fail(cl, "%s", strerror(errno));
		rc = om_client_list_page(cl->c, prefix, &cursor, ls_entry, &l);
		if (rc != 0) {
			fclose(l.m);
			free(text);
			return fail_client(cl, rc);
		}
		if ((rc = emit(cl, STDOUT_FILENO, l.m, &text, &len)) != 0)
			return rc;
	} while (cursor != 0);
	return 0;
}

/* purge: the number of objects deleted, alone on a line (also when it
 * failed part way: those are gone all the same). */
static int
cmd_purge(cli_t *cl, int argc, char **argv)
{
	uint64_t n = 0;
	char line[32];
	int rc, wr, k;

	if ((rc = no_options(cl, &argc, &argv)) != 0)
		return rc;
	if (argc < 1)
		return usage_error(cl, "missing PREFIX");
	if (argc > 1)
		return usage_error(cl, "unexpected argument %s", argv[1]);
	if (argv[0][0] == '\0')
		return usage_error(cl, "an empty PREFIX would purge every object");
	cl->uri = argv[0];
	if ((rc = connect_daemon(cl)) != 0)
		return rc;
	rc = om_client_purge(cl->c, cl->uri, &n);
	k = snprintf(line, sizeof(line), "%llu\n", (unsigned long long)n);
	wr = om_cli_write_all(STDOUT_FILENO, line, (size_t)k);
	if (rc != 0)
		return fail_client(cl, rc);
	if (wr != 0)
		return fail(cl, "write to standard output: %s", strerror(-wr));
	return 0;
}

static const command_t commands[] = {
	{ "put", "put [-E] [-x SECONDS | -X UNIXTIME] [-M TEXT | -M @FILE] URI [FILE]", cmd_put },
	{ "get", "get [-i] URI [FILE]", cmd_get },
	{ "delete", "delete URI", cmd_delete },
	{ "stat", "stat URI", cmd_stat },
	{ "stats", "stats [--json | --prometheus]", cmd_stats },
	{ "ping", "ping", cmd_ping },
	{ "verify", "verify [URI]", cmd_verify },
	{ "ls", "ls [-l] [PREFIX]", cmd_ls },
	{ "purge", "purge PREFIX", cmd_purge },
};

static const command_t *
find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(name, commands[i].name) == 0)
			return &commands[i];
	}
	return NULL;
}

/*
 * With 0, 1 or 2 closed, the daemon's socket would take that number and
 * get an object's bytes written into it. Each closed one is taken by
 * /dev/null opened the wrong way round, so that using it fails with EBADF
 * as using a closed descriptor would.
 */
static int
hold_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		int nfd;

		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		nfd = open("/dev/null", fd == STDIN_FILENO ? O_WRONLY : O_RDONLY);
		if (nfd != fd) {
			if (nfd >= 0)
				close(nfd);
			return -1;
		}
	}
	return 0;
}

static const char help[] =
    "usage: " GLOBAL_SYNOPSIS " COMMAND [ARGS]\n"
    "       objmapper -v | --version | -h | --help\n"
    "\n"
    "commands:\n"
    "  put [-E] [-x SECONDS | -X UNIXTIME] [-M TEXT | -M @FILE] URI [FILE]\n"
    "                  store FILE (default: standard input) as URI\n"
    "      -E          ephemeral: keep it in the memory tier only\n"
    "      -x SECONDS  expire SECONDS from now\n"
    "      -X UNIXTIME expire at UNIXTIME (0: never)\n"
    "      -M TEXT     metadata kept with the object; -M @FILE reads it from FILE\n"
    "  get [-i] URI [FILE]\n"
    "                  write the object to FILE (default: standard output)\n"
    "      -i          also print the object's fields on standard error\n"
    "  delete URI      remove the object\n"
    "  stat URI        print the object's fields\n"
    "  stats [--json | --prometheus]\n"
    "                  print the daemon's statistics as a table\n"
    "      --json      as one JSON object\n"
    "      --prometheus\n"
    "                  in the Prometheus text exposition format\n"
    "  ping            check the daemon; print the round trip in microseconds\n"
    "  verify [URI]    check the object's bytes against their checksum; without\n"
    "                  URI, start a scrub pass over the store\n"
    "  ls [-l] [PREFIX]\n"
    "                  list the URIs that begin with PREFIX (default: all)\n"
    "      -l          also size, expiry and tier\n"
    "  purge PREFIX    delete every object whose URI begins with PREFIX; print\n"
    "                  how many\n"
    "\n"
    "options:\n"
    "  -s ADDRESS the daemon's socket path, or tcp://HOST:PORT, udp://HOST:PORT\n"
    "             (default: $OBJMAPPER_SOCKET, else " OM_DEFAULT_SOCKET ")\n"
    "  -H HOST    connect over TCP to HOST (default 127.0.0.1 with -p or -u)\n"
    "  -p PORT    the TCP or UDP port (default " DEFAULT_PORT ")\n"
    "  -u         over UDP instead of TCP (small objects only)\n"
    "  -m MODE    how get receives the bytes: auto (default), fdpass, copy, splice\n"
    "  -t MS      wait at most MS milliseconds for the daemon: to connect and for\n"
    "             each answer (default 5000 to connect, 30000 for answers; 0: no limit)\n"
    "  -v         print the version and exit (also --version)\n"
    "  -h         print this help and exit (also --help)\n"
    "\n"
    "exit status: 0 success, 1 no such object, 2 usage error, 3 other error,\n"
    "             4 verify found the object damaged\n";

int
main(int argc, char **argv)
{
	static const char version[] = "objmapper " OM_CLIENT_VERSION "\n";
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	cli_t cl = { .mode = OM_MODE_AUTO, .timeout_ms = -1 };
	const command_t *cmd;
	const char *host = NULL, *port = NULL;
	char addr[sizeof("udp://[]:") + 256 + 16];
	bool udp = false;
	int ch, rc;

	/* A closed output is an error to report (EPIPE), not a death. */
	signal(SIGPIPE, SIG_IGN);
	if (hold_std_fds() != 0)
		return fail(&cl, "cannot open /dev/null: %s", strerror(errno));
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:s:m:H:p:t:uvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			cl.socket = optarg;
			break;
		case 'H':
			host = optarg;
			break;
		case 'p':
			port = optarg;
			if (*port == '\0' || strspn(port, "0123456789") != strlen(port) ||
			    strlen(port) > 5 || strtol(port, NULL, 10) < 1 || strtol(port, NULL, 10) > 65535)
				return usage_error(&cl, "bad port %s", optarg);
			break;
		case 'u':
			udp = true;
			break;
		case 't': {
			char *end;
			long t = strtol(optarg, &end, 10);

			if (*optarg == '\0' || *end != '\0' || t < 0 || t > 24L * 3600 * 1000)
				return usage_error(&cl, "bad timeout %s (milliseconds)", optarg);
			cl.timeout_ms = (int)t;
			break;
		}
		case 'm':
			if (parse_mode(optarg, &cl.mode) != 0)
				return usage_error(&cl, "unknown mode %s", optarg);
			break;
		case 'v':
		case 'h':
			rc = ch == 'v' ? om_cli_write_all(STDOUT_FILENO, version, sizeof(version) - 1) :
			    om_cli_write_all(STDOUT_FILENO, help, sizeof(help) - 1);
			if (rc != 0)
				return fail(&cl, "write to standard output: %s", strerror(-rc));
			return 0;
		default:
			if (ch == '?' && strncmp(argv[optind - 1], "--", 2) == 0)
				return usage_error(&cl, "unknown option %s", argv[optind - 1]);
			return option_error(&cl, ch);
		}
	}
	if (host != NULL || port != NULL || udp) {
		if (cl.socket != NULL)
			return usage_error(&cl, "-s and -H, -p or -u exclude each other");
		if (host == NULL)
			host = "127.0.0.1";
		if (strlen(host) > 255)
			return usage_error(&cl, "host name too long");
		snprintf(addr, sizeof(addr), "%s://%s%s%s:%s", udp ? "udp" : "tcp",
		    strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
		    port ? port : DEFAULT_PORT);
		cl.socket = addr;
	}
	if (optind >= argc)
		return usage_error(&cl, "missing command");
	if ((cmd = find_command(argv[optind])) == NULL)
		return usage_error(&cl, "unknown command %s", argv[optind]);
	cl.cmd = cmd->name;
	rc = cmd->run(&cl, argc - optind, argv + optind);
	om_client_close(cl.c);
	return rc;
}
