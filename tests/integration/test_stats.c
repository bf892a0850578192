/*
 * STATS against the real daemon: exact counts after a known sequence of
 * operations, the line grammar of the text form, the Prometheus text
 * format checked line by line, the three outputs of "objmapper stats"
 * (table, --json through a strict JSON parser, --prometheus), and the
 * statistics scraped with curl from an HTTP listener with serve = metrics
 * (checked by promtool where the prometheus package is installed).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_test.h"

static om_daemon_t D;

/* Status names as label values, in code order: the protocol's names,
 * lowercased. */
static const char *const statuses[] = {
	"ok", "not_found", "bad_request", "version", "unknown_op", "mode_unsupported",
	"uri_invalid", "meta_too_large", "too_large", "no_space", "denied", "busy",
	"short_body", "internal",
};
_Static_assert(sizeof(statuses) / sizeof(statuses[0]) == OM_STATUS_MAX + 1, "a status name each");
static const char *const ops[] = { "hello", "get", "put", "delete", "stat", "stats", "ping", "verify",
	"list", "purge",
	"other" };

/* HTTP listeners: metrics (loopback may scrape), metrics that nobody
 * here may scrape, metrics on a Unix socket, and one of objects. */
static int metrics_port, closed_port, objects_port;

static int
setup(void **state)
{
	char extra[1024];

	metrics_port = om_test_free_port();
	closed_port = om_test_free_port();
	objects_port = om_test_free_port();
	/* No promotion: a persistent object's reads stay persistent hits. */
	snprintf(extra, sizeof(extra), "[cache]\npromote_hits = 0\n"
	    "[listen.metrics]\ntype = http\naddress = 127.0.0.1\nport = %d\nserve = metrics\n"
	    "allow_read = 127.0.0.1\n"
	    "[listen.closed]\ntype = http\naddress = 127.0.0.1\nport = %d\nserve = metrics\n"
	    "allow_read = 10.9.9.9\n"
	    "[listen.metrics_unix]\ntype = http\npath = metrics.sock\nserve = metrics\n"
	    "[listen.objects]\ntype = http\naddress = 127.0.0.1\nport = %d\n",
	    metrics_port, closed_port, objects_port);
	om_daemon_up(&D, 2, extra);
	*state = &D;
	return 0;
}

static char *
stats(om_client_t *c, unsigned flags)
{
	char *text = NULL;

	assert_int_equal(om_client_stats_ex(c, flags, &text), 0);
	assert_non_null(text);
	return text;
}

/*
 * The value of a series ("name" or "name{k="v"}") in STATS text: found
 * only at the start of a line and followed by a space. A requests_total
 * series the text form leaves out (it was zero) is 0; any other absent
 * series fails the test.
 */
static uint64_t
value(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtoull(p + n + 1, NULL, 10);
	}
	if (strncmp(series, "requests_total{", 15) == 0)
		return 0;
	fail_msg("no series %s in:\n%s", series, text);
	return 0;
}

static uint64_t
req(const char *text, const char *op, const char *status)
{
	char s[96];

	snprintf(s, sizeof(s), "requests_total{op=\"%s\",status=\"%s\"}", op, status);
	return value(text, s);
}

/* ---- the line grammar ------------------------------------------------------ */

static int
in_set(char c, const char *set)
{
	return c != '\0' && strchr(set, c) != NULL;
}

#define NAME_CHARS  "abcdefghijklmnopqrstuvwxyz0123456789_"
#define LABEL_CHARS "abcdefghijklmnopqrstuvwxyz_"

/*
 * Checks one sample line "name[{k="v",...}] value" (no newline), names
 * [a-z0-9_], label names [a-z_], label values [a-z0-9_], the value
 * unsigned decimal. Copies the name into name (NUL-terminated).
 */
static void
check_sample(const char *line, size_t len, char *name, size_t cap)
{
	const char *p = line, *end = line + len;
	size_t n = 0;

	while (p < end && in_set(*p, NAME_CHARS))
		p++;
	n = (size_t)(p - line);
	if (n == 0 || n >= cap || !(line[0] >= 'a' && line[0] <= 'z'))
		fail_msg("bad name in %.*s", (int)len, line);
	memcpy(name, line, n);
	name[n] = '\0';
	if (p < end && *p == '{') {
		p++;
		for (;;) {
			const char *k = p;

			while (p < end && in_set(*p, LABEL_CHARS))
				p++;
			if (p == k || p + 1 >= end || p[0] != '=' || p[1] != '"')
				fail_msg("bad label in %.*s", (int)len, line);
			p += 2;
			while (p < end && in_set(*p, NAME_CHARS))
				p++;
			if (p >= end || *p != '"')
				fail_msg("bad label value in %.*s", (int)len, line);
			p++;
			if (p < end && *p == ',') {
				p++;
				continue;
			}
			if (p >= end || *p != '}')
				fail_msg("labels not closed in %.*s", (int)len, line);
			p++;
			break;
		}
	}
	if (p >= end || *p != ' ')
		fail_msg("no space before the value in %.*s", (int)len, line);
	p++;
	if (p >= end)
		fail_msg("no value in %.*s", (int)len, line);
	if (*p == '0' && p + 1 < end)
		fail_msg("leading zero in %.*s", (int)len, line);
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			fail_msg("value not decimal in %.*s", (int)len, line);
	}
}

/* A metric name: ^objmapper_[a-z0-9_]+$ (the prefix optional). */
static void
check_name(const char *name, int prefixed)
{
	const char *p = name;

	if (prefixed) {
		if (strncmp(p, "objmapper_", 10) != 0)
			fail_msg("%s lacks the prefix objmapper_", name);
		p += 10;
	}
	if (*p == '\0')
		fail_msg("empty name: %s", name);
	for (; *p; p++) {
		if (!in_set(*p, NAME_CHARS))
			fail_msg("bad name %s", name);
	}
}

/* Every line of the text form is a sample; no comments, no blank lines. */
static void
check_text_form(const char *text)
{
	const char *p = text;
	char name[128];

	assert_true(*p != '\0');
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');

		assert_non_null(nl); /* every line ends with a newline */
		check_sample(p, (size_t)(nl - p), name, sizeof(name));
		p = nl + 1;
	}
}

/* ---- exact counts ------------------------------------------------------------ */

static void
put(om_client_t *c, const char *uri, size_t len, unsigned flags)
{
	om_put_opts_t po = { .flags = flags };
	char *buf = malloc(len);

	assert_non_null(buf);
	om_test_fill(buf, len, len);
	assert_int_equal(om_client_put(c, uri, buf, len, &po, NULL), 0);
	free(buf);
}

static void
get(om_client_t *c, const char *uri, int mode, int expect)
{
	om_object_t o;

	assert_int_equal(om_client_get(c, uri, mode, 0, &o), expect);
	if (expect == 0)
		om_object_free(&o);
}

/*
 * First in the group, on a fresh daemon: 3 PUTs (one ephemeral), 5 GET
 * hits (2 of them as descriptors), 2 GET misses, 1 DELETE, 1 STAT miss,
 * 1 PING; every counter they touch, exactly.
 */
static void
test_exact_counts(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	char *before, *after;
	om_info_t info;
	int fd;

	(void)state;
	before = stats(c, 0);
	check_text_form(before);
	put(c, "/s/a", 1000, 0);
	put(c, "/s/b", 2000, 0);
	put(c, "/s/e", 300, OM_PUT_EPHEMERAL);
	get(c, "/s/a", OM_MODE_COPY, 0);
	get(c, "/s/b", OM_MODE_SPLICE, 0);
	get(c, "/s/e", OM_MODE_COPY, 0);
	assert_int_equal(om_client_get_fd(c, "/s/a", &fd, NULL), 0);
	close(fd);
	assert_int_equal(om_client_get_fd(c, "/s/b", &fd, NULL), 0);
	close(fd);
	get(c, "/s/none1", OM_MODE_COPY, -OM_STATUS_NOT_FOUND);
	get(c, "/s/none2", OM_MODE_FDPASS, -OM_STATUS_NOT_FOUND);
	assert_int_equal(om_client_delete(c, "/s/b"), 0);
	assert_int_equal(om_client_stat(c, "/s/none", 0, &info, NULL, NULL), -OM_STATUS_NOT_FOUND);
	assert_int_equal(om_client_ping(c), 0);
	after = stats(c, 0);
	check_text_form(after);

	/* Absolute: nothing else has read or written on this daemon. */
	assert_int_equal(req(after, "get", "ok"), 5);
	assert_int_equal(req(after, "get", "not_found"), 2);
	assert_int_equal(req(after, "put", "ok"), 3);
	assert_int_equal(req(after, "delete", "ok"), 1);
	assert_int_equal(req(after, "stat", "not_found"), 1);
	assert_int_equal(req(after, "ping", "ok"), 1);
	assert_int_equal(value(after, "hits_total{tier=\"memory\"}"), 1);
	assert_int_equal(value(after, "hits_total{tier=\"persistent\"}"), 4);
	assert_int_equal(value(after, "misses_total"), 2);
	assert_int_equal(value(after, "gets_total"), 7);
	assert_int_equal(value(after, "puts_total"), 3);
	assert_int_equal(value(after, "put_bytes_total"), 3300);
	assert_int_equal(value(after, "deletes_total"), 1);
	assert_int_equal(value(after, "descriptors_passed_total"), 2);
	assert_int_equal(value(after, "objects{tier=\"memory\"}"), 1);
	assert_int_equal(value(after, "objects{tier=\"persistent\"}"), 1);
	assert_int_equal(value(after, "objects_ephemeral"), 1);
	assert_int_equal(value(after, "objects_copies"), 0);
	assert_int_equal(value(after, "index_objects"), 2);
	assert_int_equal(value(after, "bytes{tier=\"memory\"}"), 300);
	assert_int_equal(value(after, "bytes{tier=\"persistent\"}"), 1000);
	assert_int_equal(value(after, "limit_bytes{tier=\"memory\"}"), 256u << 20);
	assert_int_equal(value(after, "limit_bytes{tier=\"persistent\"}"), 2048u << 20);
	assert_int_equal(value(after, "evictions_total{tier=\"memory\"}"), 0);
	assert_int_equal(value(after, "promotions_total"), 0);
	assert_int_equal(value(after, "workers"), 2);
	assert_int_equal(value(after, "generation"), 1);
	assert_true(value(after, "connections_current") >= 1);
	/* Zero combinations are left out of the text form. */
	assert_null(strstr(after, "requests_total{op=\"delete\",status=\"not_found\"}"));

	/* Deltas: the first STATS is counted by the second; HELLO is not
	 * repeated on one connection. */
	assert_int_equal(req(after, "stats", "ok") - req(before, "stats", "ok"), 1);
	assert_int_equal(req(after, "hello", "ok") - req(before, "hello", "ok"), 0);
	assert_true(value(after, "bytes_in_total") - value(before, "bytes_in_total") >= 3300);
	assert_true(value(after, "bytes_out_total") - value(before, "bytes_out_total") >= 3300);
	free(before);
	free(after);
	om_client_close(c);
}

/* Requests refused before their op is known, and a client's GOAWAY,
 * count as op "other". */
static void
test_other_op(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0), *raw;
	uint8_t frame[OM_REQ_HDR_LEN] = { 'X', 'X' };
	uint8_t resp[OM_RESP_HDR_LEN + OM_PROTO_MSG_MAX];
	char *before, *after;

	(void)state;
	before = stats(c, 0);
	/* On a second connection, which a bad frame closes. The answer is
	 * counted before it is sent. */
	raw = om_test_connect(D.sock, 0);
	assert_int_equal(write(om_client_fd(raw), frame, sizeof(frame)), (ssize_t)sizeof(frame));
	assert_true(read(om_client_fd(raw), resp, sizeof(resp)) >= (ssize_t)OM_RESP_HDR_LEN);
	om_client_close(raw);
	after = stats(c, 0);
	assert_int_equal(req(after, "other", "bad_request") - req(before, "other", "bad_request"), 1);
	assert_int_equal(value(after, "bad_frames_total") - value(before, "bad_frames_total"), 1);
	free(before);
	free(after);
	om_client_close(c);
}

/* ---- the Prometheus format ---------------------------------------------------- */

static int
ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/*
 * Every sample's family has "# HELP" then "# TYPE" before it, each family
 * once; names ^objmapper_[a-z0-9_]+$; counters end in _total, gauges do
 * not; every sample parses. Returns how many samples the family `count`
 * has.
 */
static unsigned
check_prometheus(const char *text, const char *count)
{
	char family[128] = "", help[128] = "", name[128], seen[8192] = " ";
	const char *p = text;
	unsigned samples = 0, families = 0;

	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t len;

		assert_non_null(nl);
		len = (size_t)(nl - p);
		if (strncmp(p, "# HELP ", 7) == 0) {
			const char *sp = memchr(p + 7, ' ', len - 7);

			assert_non_null(sp);
			assert_true(sp + 1 < nl); /* a text */
			snprintf(help, sizeof(help), "%.*s", (int)(sp - p - 7), p + 7);
			check_name(help, 1);
		} else if (strncmp(p, "# TYPE ", 7) == 0) {
			const char *type;
			char key[140];
			int counter;

			snprintf(family, sizeof(family), "%.*s", (int)(len - 7), p + 7);
			assert_non_null(strchr(family, ' '));
			*strchr(family, ' ') = '\0';
			/* HELP right before TYPE, for the same name. */
			assert_string_equal(family, help);
			help[0] = '\0';
			check_name(family, 1);
			type = p + 7 + strlen(family) + 1;
			counter = strncmp(type, "counter\n", 8) == 0;
			assert_true(counter || strncmp(type, "gauge\n", 6) == 0);
			if (ends_with(family, "_total") != counter)
				fail_msg("%s is a %s", family, counter ? "counter without _total" : "gauge in _total");
			snprintf(key, sizeof(key), " %s ", family);
			if (strstr(seen, key) != NULL)
				fail_msg("family %s twice", family);
			assert_true(strlen(seen) + strlen(family) + 2 < sizeof(seen));
			strcat(seen, family);
			strcat(seen, " ");
			families++;
		} else {
			assert_true(*p != '#');
			check_sample(p, len, name, sizeof(name));
			if (strcmp(name, family) != 0)
				fail_msg("sample %.*s outside its family (%s)", (int)len, p, family);
			if (strcmp(name, count) == 0)
				samples++;
		}
		p = nl + 1;
	}
	assert_true(families > 30);
	return samples;
}

static void
test_prometheus(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	char *text = stats(c, 0), *prom = stats(c, OM_STATS_PROMETHEUS);
	char s[160];

	(void)state;
	assert_int_equal(check_prometheus(prom, "objmapper_requests_total"),
	    (sizeof(ops) / sizeof(ops[0])) * (OM_STATUS_MAX + 1));
	assert_int_equal(check_prometheus(prom, "objmapper_hits_total"), 2);
	assert_int_equal(check_prometheus(prom, "objmapper_timeouts_total"), 2);
	assert_int_equal(check_prometheus(prom, "objmapper_datagrams_total"), 2);
	/* Every combination, zeros included. */
	for (size_t o = 0; o < sizeof(ops) / sizeof(ops[0]); o++) {
		for (size_t st = 0; st <= OM_STATUS_MAX; st++) {
			snprintf(s, sizeof(s), "\nobjmapper_requests_total{op=\"%s\",status=\"%s\"} ", ops[o],
			    statuses[st]);
			assert_non_null(strstr(prom, s));
		}
	}
	/* Every family of the text form, under the prefix; the same numbers
	 * for what did not move between the two calls. */
	for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
		size_t n = strcspn(p, "{ ");

		snprintf(s, sizeof(s), "\n# TYPE objmapper_%.*s ", (int)n, p);
		assert_non_null(strstr(prom, s));
	}
	assert_non_null(strstr(prom, "\nobjmapper_requests_total{op=\"get\",status=\"ok\"} 5\n"));
	assert_non_null(strstr(prom, "\nobjmapper_hits_total{tier=\"persistent\"} 4\n"));
	assert_non_null(strstr(prom, "\nobjmapper_bytes{tier=\"memory\"} 300\n"));
	assert_non_null(strstr(prom, "\nobjmapper_descriptors_passed_total 2\n"));
	/* Unknown flags are refused. */
	free(text);
	assert_int_equal(om_client_stats_ex(c, 0x2, &text), -OM_STATUS_BAD_REQUEST);
	free(text);
	free(prom);
	om_client_close(c);
}

/* ---- scraped over HTTP (serve = metrics) ------------------------------------- */

/* Runs a shell command; its standard output in out (NUL-terminated,
 * truncated to cap); returns its exit status. */
__attribute__((format(printf, 3, 4))) static int
run(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	size_t n = 0, k;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (n + 1 < cap && (k = fread(out + n, 1, cap - 1 - n, p)) > 0)
		n += k;
	out[n] = '\0';
	while (fgetc(p) != EOF)
		;
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* curl -i of a URL (and extra curl arguments): the head in head, the body
 * returned (in the same buffer); asserts curl's success. */
static char *
curl(char *buf, size_t cap, const char *args, const char *url, char **head)
{
	char *sep;

	if (run(buf, cap, "curl -sS -i --max-time 10 %s '%s'", args, url) != 0)
		fail_msg("curl %s %s failed: %s", args, url, buf);
	sep = strstr(buf, "\r\n\r\n");
	assert_non_null(sep);
	*sep = '\0';
	*head = buf;
	return sep + 4;
}

static int
has_line(const char *head, const char *line)
{
	const char *p = strstr(head, line);

	return p != NULL && (p == head || p[-1] == '\n') && (p[strlen(line)] == '\r' ||
	    p[strlen(line)] == '\0');
}

static void
test_metrics_http(void **state)
{
	static char buf[1 << 20], obj[4096];
	om_client_t *c = om_test_connect(D.sock, 0);
	char url[256], file[400], *head, *body, *before, *after;
	unsigned long long puts0;
	int promtool;

	(void)state;
	before = stats(c, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", metrics_port);
	body = curl(buf, sizeof(buf), "", url, &head);
	assert_true(has_line(head, "HTTP/1.1 200 OK"));
	assert_true(has_line(head, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
	/* The format of STATS PROMETHEUS, line by line. */
	assert_int_equal(check_prometheus(body, "objmapper_requests_total"),
	    (sizeof(ops) / sizeof(ops[0])) * (OM_STATUS_MAX + 1));
	assert_non_null(strstr(body, "\n# TYPE objmapper_puts_total counter\n"));
	assert_non_null(strstr(body, "\n# TYPE objmapper_objects_purged_total counter\n"));
	{
		/* Content-Length is the body's. */
		char line[64];

		snprintf(line, sizeof(line), "Content-Length: %zu", strlen(body));
		assert_true(has_line(head, line));
	}
	/* promtool, where the prometheus package is installed. */
	promtool = run(obj, sizeof(obj), "command -v promtool") == 0;
	if (promtool) {
		FILE *f;

		snprintf(file, sizeof(file), "%s/scrape.txt", D.dir);
		f = fopen(file, "w");
		assert_non_null(f);
		assert_int_equal(fputs(body, f) >= 0, 1);
		fclose(f);
		if (run(obj, sizeof(obj), "promtool check metrics < '%s' 2>&1", file) != 0 || obj[0] != '\0')
			fail_msg("promtool check metrics: %s", obj);
		print_message("promtool check metrics: no finding\n");
	} else {
		print_message("promtool not installed: the strict checker only\n");
	}
	/* A scraper's query is ignored; HEAD has the head only. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics?name[]=objmapper_puts_total",
	    metrics_port);
	body = curl(buf, sizeof(buf), "-g", url, &head);
	assert_true(has_line(head, "HTTP/1.1 200 OK"));
	assert_non_null(strstr(body, "\nobjmapper_puts_total "));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", metrics_port);
	body = curl(buf, sizeof(buf), "-I", url, &head);
	assert_true(has_line(head, "HTTP/1.1 200 OK"));
	assert_string_equal(body, "");
	/* Nothing else is served there. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", metrics_port);
	body = curl(buf, sizeof(buf), "", url, &head);
	assert_true(has_line(head, "HTTP/1.1 404 Not Found"));
	assert_string_equal(body, "404 Not Found: listener metrics serves the statistics at /metrics "
	    "only\n");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metricsx", metrics_port);
	(void)curl(buf, sizeof(buf), "", url, &head);
	assert_true(has_line(head, "HTTP/1.1 404 Not Found"));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", metrics_port);
	body = curl(buf, sizeof(buf), "-X PUT --data-binary x", url, &head);
	assert_true(has_line(head, "HTTP/1.1 405 Method Not Allowed"));
	assert_true(has_line(head, "Allow: GET, HEAD"));
	assert_true(has_line(head, "Connection: close"));
	assert_string_equal(body, "405 Method Not Allowed: listener metrics serves the statistics "
	    "only: GET /metrics\n");
	body = curl(buf, sizeof(buf), "-X DELETE", url, &head);
	assert_true(has_line(head, "HTTP/1.1 405 Method Not Allowed"));
	assert_non_null(strstr(body, "serves the statistics only"));
	/* Its allow list: loopback is not on the closed listener's. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", closed_port);
	body = curl(buf, sizeof(buf), "", url, &head);
	assert_true(has_line(head, "HTTP/1.1 403 Forbidden"));
	assert_non_null(strstr(body, "may not read on listener closed"));
	/* Over a Unix socket. */
	snprintf(file, sizeof(file), "--unix-socket '%s/metrics.sock'", D.dir);
	body = curl(buf, sizeof(buf), file, "http://localhost/metrics", &head);
	assert_true(has_line(head, "HTTP/1.1 200 OK"));
	(void)check_prometheus(body, "");

	/* An object named /metrics is an object, on a listener of objects;
	 * the metrics listener gives the statistics all the same. */
	puts0 = value(before, "puts_total");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", objects_port);
	body = curl(buf, sizeof(buf), "-X PUT --data-binary 'not the statistics'", url, &head);
	assert_true(has_line(head, "HTTP/1.1 201 Created"));
	assert_string_equal(body, "");
	body = curl(buf, sizeof(buf), "", url, &head);
	assert_true(has_line(head, "HTTP/1.1 200 OK"));
	assert_string_equal(body, "not the statistics");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", metrics_port);
	body = curl(buf, sizeof(buf), "", url, &head);
	assert_true(has_line(head, "HTTP/1.1 200 OK"));
	snprintf(obj, sizeof(obj), "\nobjmapper_puts_total %llu\n", puts0 + 1);
	assert_non_null(strstr(body, obj));

	/* Counted as STATS: 5 scrapes answered 200 (2 GETs and a HEAD
	 * before, the Unix one, the last), 4 refused on the listener, 1
	 * denied. */
	after = stats(c, 0);
	assert_int_equal(req(after, "stats", "ok") - req(before, "stats", "ok"), 5 + 1);
	assert_int_equal(req(after, "stats", "not_found") - req(before, "stats", "not_found"), 2);
	assert_int_equal(req(after, "stats", "bad_request") - req(before, "stats", "bad_request"), 2);
	assert_int_equal(req(after, "stats", "denied") - req(before, "stats", "denied"), 1);
	free(before);
	free(after);
	om_client_close(c);
}

/* ---- the objmapper command --------------------------------------------------- */

/* Runs objmapper -s SOCK ARGS; stdout into out, stderr dropped. Returns
 * the exit status. */
static int
cli(char *out, size_t cap, const char *a1, const char *a2)
{
	const char *prog = om_test_program("objmapper");
	int fds[2], status;
	size_t got = 0;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(fds[1], 1);
		dup2(null, 2);
		close(fds[0]);
		execl(prog, "objmapper", "-s", D.sock, "stats", a1, a2, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		ssize_t r = read(fds[0], out + got, cap - 1 - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	assert_true(got < cap - 1);
	out[got] = '\0';
	close(fds[0]);
	status = om_test_wait(pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_cli_table(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	char *text = stats(c, 0);
	static char out[65536];
	size_t width = 0;

	(void)state;
	assert_int_equal(cli(out, sizeof(out), NULL, NULL), 0);
	/* Every series of the text (taken first: the table's has as many or
	 * more), at the start of a line, then its value. */
	for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
		char s[160], *at;
		size_t n = strcspn(p, " ");

		snprintf(s, sizeof(s), "\n%.*s ", (int)n, p);
		at = strstr(out, s);
		if (at == NULL && strncmp(out, s + 1, n + 1) != 0)
			fail_msg("%.*s missing from the table:\n%s", (int)n, p, out);
	}
	assert_non_null(strstr(out, "requests_total{op=\"get\",status=\"ok\"} "));
	/* Two aligned columns: names left, values right, every line as long. */
	for (const char *p = out; *p; p = strchr(p, '\n') + 1) {
		size_t len = strcspn(p, "\n");

		assert_true(len > 0);
		if (width == 0)
			width = len;
		assert_int_equal(len, width);
		assert_true(p[len - 1] >= '0' && p[len - 1] <= '9');
	}
	/* Unknown options and both formats at once are usage errors. */
	assert_int_equal(cli(out, sizeof(out), "--bogus", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "-x", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "--json", "--prometheus"), 2);
	assert_int_equal(cli(out, sizeof(out), "--json", "extra"), 2);
	/* --prometheus prints the daemon's text as it is. */
	assert_int_equal(cli(out, sizeof(out), "--prometheus", NULL), 0);
	assert_int_equal(strncmp(out, "# HELP objmapper_uptime_seconds ", 32), 0);
	(void)check_prometheus(out, "");
	free(text);
	om_client_close(c);
}

/* ---- a strict JSON parser ------------------------------------------------------ */

typedef struct {
	const char *p;
	int depth;
} js_t;

static void
js_ws(js_t *j)
{
	while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
		j->p++;
}

static int
hex4(const char *p)
{
	for (int i = 0; i < 4; i++) {
		if (!in_set(p[i], "0123456789abcdefABCDEF"))
			return 0;
	}
	return 1;
}

/* A string (RFC 8259: no raw control characters, known escapes only),
 * decoded into out (ASCII escapes; others as '?'). 0 or -1. */
static int
js_string(js_t *j, char *out, size_t cap)
{
	size_t n = 0;

	if (*j->p != '"')
		return -1;
	for (j->p++; *j->p != '"'; j->p++) {
		unsigned char c = (unsigned char)*j->p;

		if (c < 0x20)
			return -1;
		if (c == '\\') {
			j->p++;
			switch (*j->p) {
			case '"': case '\\': case '/': c = (unsigned char)*j->p; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'u':
				if (!hex4(j->p + 1))
					return -1;
				c = '?';
				j->p += 4;
				break;
			default: return -1;
			}
		}
		if (out != NULL && n + 1 < cap)
			out[n++] = (char)c;
	}
	j->p++;
	if (out != NULL)
		out[n] = '\0';
	return 0;
}

static int
js_number(js_t *j, char *out, size_t cap)
{
	const char *s = j->p;

	if (*j->p == '-')
		j->p++;
	if (*j->p == '0')
		j->p++;
	else if (*j->p >= '1' && *j->p <= '9')
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	else
		return -1;
	if (*j->p == '.') {
		if (!(*++j->p >= '0' && *j->p <= '9'))
			return -1;
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (*j->p == 'e' || *j->p == 'E') {
		j->p++;
		if (*j->p == '+' || *j->p == '-')
			j->p++;
		if (!(*j->p >= '0' && *j->p <= '9'))
			return -1;
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (out != NULL)
		snprintf(out, cap, "%.*s", (int)(j->p - s), s);
	return 0;
}

static int js_value(js_t *j);

static int
js_members(js_t *j, char close, int object)
{
	j->p++;
	js_ws(j);
	if (*j->p == close) {
		j->p++;
		return 0;
	}
	for (;;) {
		js_ws(j);
		if (object) {
			if (js_string(j, NULL, 0) != 0)
				return -1;
			js_ws(j);
			if (*j->p++ != ':')
				return -1;
		}
		if (js_value(j) != 0)
			return -1;
		js_ws(j);
		if (*j->p == close) {
			j->p++;
			return 0;
		}
		if (*j->p++ != ',')
			return -1;
	}
}

static int
js_value(js_t *j)
{
	int rc;

	js_ws(j);
	if (++j->depth > 64)
		return -1;
	switch (*j->p) {
	case '{': rc = js_members(j, '}', 1); break;
	case '[': rc = js_members(j, ']', 0); break;
	case '"': rc = js_string(j, NULL, 0); break;
	case 't': rc = strncmp(j->p, "true", 4) == 0 ? (j->p += 4, 0) : -1; break;
	case 'f': rc = strncmp(j->p, "false", 5) == 0 ? (j->p += 5, 0) : -1; break;
	case 'n': rc = strncmp(j->p, "null", 4) == 0 ? (j->p += 4, 0) : -1; break;
	default: rc = js_number(j, NULL, 0); break;
	}
	j->depth--;
	return rc;
}

/* One JSON text and nothing else (whitespace aside). */
static int
json_valid(const char *s)
{
	js_t j = { s, 0 };

	if (js_value(&j) != 0)
		return 0;
	js_ws(&j);
	return *j.p == '\0';
}

#define EXPECT(j, c) do { js_ws(j); assert_int_equal(*(j)->p, (c)); (j)->p++; } while (0)

/*
 * Turns the stats JSON back into text-form lines: "name": N is "name N",
 * "name": [{"k": "v", ..., "value": N}, ...] is one "name{k="v",...} N"
 * per element. Asserts the shape; the top level's names are unique.
 */
static void
json_to_lines(const char *json, char *out, size_t cap)
{
	js_t j = { json, 0 };
	char name[128], key[160], v[64], labels[256], keys[8192] = "\n";
	size_t n = 0;

	EXPECT(&j, '{');
	for (;;) {
		js_ws(&j);
		assert_int_equal(js_string(&j, name, sizeof(name)), 0);
		snprintf(key, sizeof(key), "\n%s\n", name);
		if (strstr(keys, key) != NULL)
			fail_msg("member %s twice", name);
		strncat(keys, key + 1, sizeof(keys) - strlen(keys) - 1);
		EXPECT(&j, ':');
		js_ws(&j);
		if (*j.p != '[') {
			assert_int_equal(js_number(&j, v, sizeof(v)), 0);
			n += (size_t)snprintf(out + n, cap - n, "%s %s\n", name, v);
		} else {
			j.p++;
			for (;;) {
				size_t l = 0;

				EXPECT(&j, '{');
				labels[0] = '\0';
				for (;;) {
					js_ws(&j);
					assert_int_equal(js_string(&j, key, sizeof(key)), 0);
					EXPECT(&j, ':');
					js_ws(&j);
					if (strcmp(key, "value") == 0) {
						assert_int_equal(js_number(&j, v, sizeof(v)), 0);
					} else {
						char lv[64];

						assert_int_equal(js_string(&j, lv, sizeof(lv)), 0);
						l += (size_t)snprintf(labels + l, sizeof(labels) - l, "%s%s=\"%s\"",
						    l ? "," : "{", key, lv);
					}
					js_ws(&j);
					if (*j.p++ == '}')
						break;
					assert_int_equal(j.p[-1], ',');
				}
				n += (size_t)snprintf(out + n, cap - n, "%s%s%s %s\n", name, labels, l ? "}" : "", v);
				js_ws(&j);
				if (*j.p++ == ']')
					break;
				assert_int_equal(j.p[-1], ',');
			}
		}
		assert_true(n < cap);
		js_ws(&j);
		if (*j.p++ == '}')
			break;
		assert_int_equal(j.p[-1], ',');
	}
}

/* A few texts the parser must refuse, so that accepting ours means something. */
static void
test_json_parser(void **state)
{
	(void)state;
	assert_true(json_valid("{\"a\": [1, 2.5e3, -0, \"x\\n\\u00e9\", true, null, {}]}"));
	assert_false(json_valid("{\"a\": 01}"));
	assert_false(json_valid("{\"a\": 1,}"));
	assert_false(json_valid("{\"a\" 1}"));
	assert_false(json_valid("{\"a\": \"tab\there\"}"));
	assert_false(json_valid("{\"a\": \"\\x\"}"));
	assert_false(json_valid("{\"a\": 1} {}"));
	assert_false(json_valid("[1, 2"));
	assert_false(json_valid(""));
}

static void
test_cli_json(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	static char out[65536], lines[65536];
	char *t1, *t2;

	(void)state;
	t1 = stats(c, 0);
	assert_int_equal(cli(out, sizeof(out), "--json", NULL), 0);
	t2 = stats(c, 0);
	if (!json_valid(out))
		fail_msg("not valid JSON:\n%s", out);
	json_to_lines(out, lines, sizeof(lines));
	check_text_form(lines);
	/* The same numbers as the text: each series of the JSON lies between
	 * the text taken before and the one after (connections_current,
	 * a gauge, may be either side: the command's own connection). */
	for (const char *p = lines; *p; p = strchr(p, '\n') + 1) {
		char series[160];
		size_t n = strcspn(p, " ");
		uint64_t v = strtoull(p + n + 1, NULL, 10);

		snprintf(series, sizeof(series), "%.*s", (int)n, p);
		if (strcmp(series, "connections_current") == 0)
			continue;
		if (v < value(t1, series) || v > value(t2, series))
			fail_msg("%s: %llu in JSON, %llu and %llu in the text", series, (unsigned long long)v,
			    (unsigned long long)value(t1, series), (unsigned long long)value(t2, series));
	}
	/* ...and every series of the text is in the JSON. */
	for (const char *p = t1; *p; p = strchr(p, '\n') + 1) {
		char s[160];
		size_t n = strcspn(p, " ");

		snprintf(s, sizeof(s), "%.*s ", (int)n, p);
		if (strncmp(lines, s, n + 1) != 0 && strstr(lines, s) == NULL)
			fail_msg("%s missing from the JSON", s);
	}
	assert_non_null(strstr(out, "{\"op\": \"get\", \"status\": \"ok\", \"value\": 5}"));
	assert_non_null(strstr(out, "\n  \"puts_total\": 3,\n"));
	free(t1);
	free(t2);
	om_client_close(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_counts),
		cmocka_unit_test(test_prometheus),
		cmocka_unit_test(test_cli_table),
		cmocka_unit_test(test_json_parser),
		cmocka_unit_test(test_cli_json),
		cmocka_unit_test(test_other_op),
		cmocka_unit_test(test_metrics_http),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, om_daemon_teardown);
}
