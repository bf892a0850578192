/*
 * Statistics: every process counts in its own slot of the index segment
 * (no shared atomic on the hot path); STATS sums the slots and renders
 * them as "name{labels} value" lines or in the Prometheus text format.
 * Called in workers (counting, STATS) and in the master (retiring a dead
 * child's counters).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/om_core.h"
#include "proto/om_proto.h"
#include "server/om_server.h"

static size_t
srv_offset(void)
{
	return OM_ALIGN_UP(om_store_proc_bytes(), (size_t)64);
}

om_srv_stats_sh_t *
om_srv_stats(om_srv_t *srv, unsigned slot)
{
	uint8_t *area = om_index_proc_area(srv->ix, slot);

	if (area == NULL)
		return NULL;
	OM_ASSERT(srv_offset() + sizeof(om_srv_stats_sh_t) <= om_index_proc_bytes(srv->ix));
	return (om_srv_stats_sh_t *)(void *)(area + srv_offset());
}

om_srv_requests_sh_t *
om_srv_requests(om_srv_t *srv, unsigned slot)
{
	uint8_t *area = om_index_proc_area(srv->ix, slot);
	size_t off = OM_ALIGN_UP(srv_offset() + sizeof(om_srv_stats_sh_t), (size_t)64);

	if (area == NULL)
		return NULL;
	OM_ASSERT(off + sizeof(om_srv_requests_sh_t) <= om_index_proc_bytes(srv->ix));
	return (om_srv_requests_sh_t *)(void *)(area + off);
}

om_srv_stats2_sh_t *
om_srv_stats2(om_srv_t *srv, unsigned slot)
{
	uint8_t *area = om_index_proc_area(srv->ix, slot);
	size_t off = OM_ALIGN_UP(srv_offset() + sizeof(om_srv_stats_sh_t), (size_t)64);

	off = OM_ALIGN_UP(off + sizeof(om_srv_requests_sh_t), (size_t)64);
	if (area == NULL)
		return NULL;
	OM_ASSERT(off + sizeof(om_srv_stats2_sh_t) <= om_index_proc_bytes(srv->ix));
	return (om_srv_stats2_sh_t *)(void *)(area + off);
}

/* Atomic adds: two masters may retire into the same totals during a
 * binary upgrade. */
static void
add_u64s(uint64_t *to, const uint64_t *from, size_t n, int reset)
{
	for (size_t i = 0; i < n; i++) {
		OM_ADD(&to[i], OM_LOAD(&from[i]));
		if (reset)
			OM_STORE((uint64_t *)&from[i], 0);
	}
}

void
om_srv_stats_retire(om_srv_t *srv, unsigned slot)
{
	om_srv_stats_sh_t *from = om_srv_stats(srv, slot), *to = om_srv_stats(srv, OM_SLOT_RETIRED);
	om_srv_stats2_sh_t *from2 = om_srv_stats2(srv, slot), *to2 = om_srv_stats2(srv, OM_SLOT_RETIRED);
	om_store_stats_t *sfrom = (om_store_stats_t *)om_store_slot_stats(srv->st, slot);
	om_store_stats_t *sto = (om_store_stats_t *)om_store_slot_stats(srv->st, OM_SLOT_RETIRED);

	if (from == NULL || to == NULL || from2 == NULL || to2 == NULL || sfrom == NULL || sto == NULL)
		return;
	/* Open connections of a dead process are closed now. */
	OM_STORE(&from->conns_current, 0);
	add_u64s((uint64_t *)to, (const uint64_t *)from, sizeof(*from) / 8, 1);
	add_u64s((uint64_t *)to2, (const uint64_t *)from2, sizeof(*from2) / 8, 1);
	add_u64s((uint64_t *)sto, (const uint64_t *)sfrom, sizeof(*sfrom) / 8, 1);
}

/* ---- the STATS body -------------------------------------------------------- */

/*
 * Label sets. A labeled family has one series per combination, in a fixed
 * order; the text form may leave out the zero ones of requests_total (98
 * lines, most of them zero), the Prometheus form never does: a series that
 * comes and goes breaks rate().
 */
enum { LS_NONE, LS_OP_STATUS, LS_TIER, LS_KIND, LS_DIR, LS_CLASS };

/* The op label's values: the protocol's operations but GOAWAY, in code
 * order, then "other": frames refused before their op was known (bad
 * magic, version) and client frames with op GOAWAY. */
static const unsigned label_ops[] = { OM_OP_HELLO, OM_OP_GET, OM_OP_PUT, OM_OP_DELETE,
	OM_OP_STAT, OM_OP_STATS, OM_OP_PING, OM_OP_VERIFY, OM_OP_LIST, OM_OP_PURGE };
#define NOPS    (OM_ARRAY_LEN(label_ops) + 1)
#define NSTATUS (OM_STATUS_MAX + 1)

static const char *const tier_values[] = { "memory", "persistent" };
static const char *const kind_values[] = { "idle", "request" };
static const char *const dir_values[] = { "in", "out" };
static const char *const class_values[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };

static unsigned
series(unsigned ls)
{
	switch (ls) {
	case LS_OP_STATUS: return NOPS * NSTATUS;
	case LS_TIER:
	case LS_KIND:
	case LS_DIR: return 2;
	case LS_CLASS: return 5;
	default: return 1;
	}
}

/*
 * What STATS reads: every process's counters summed (workers, manager,
 * master, the retired), the shared usage, and the few values computed
 * from them. Each metric below takes its value, or its labeled family's
 * array of values, from here: a counter is defined by its field in the
 * shared structures (om_server.h, om_store.h) and its line in metrics[],
 * nowhere else.
 */
typedef struct {
	om_srv_stats_sh_t srv;
	om_srv_stats2_sh_t srv2;
	om_store_stats_t store;
	om_ix_usage_t ix;
	om_store_usage_t use;
	uint64_t uptime, generation, workers;
	uint64_t requests[NOPS][NSTATUS]; /* by the op label's values */
	uint64_t objects[2];              /* by tier */
} sums_t;

enum { COUNTER, GAUGE };

typedef struct {
	const char *name; /* [a-z0-9_]; units in the name: _seconds, _bytes, _total */
	unsigned type;
	unsigned ls;      /* LS_* */
	size_t off;       /* of its value, or its array of values, in sums_t */
	const char *help;
} metric_t;

#define M(name, type, ls, field, help) { name, type, ls, offsetof(sums_t, field), help }

/* docs/STATISTICS.md describes each of these; keep the two in step. */
static const metric_t metrics[] = {
	M("uptime_seconds", GAUGE, LS_NONE, uptime, "Seconds since the master started."),
	M("generation", GAUGE, LS_NONE, generation,
	    "Generation of the configuration (one more with each reload that took effect)."),
	M("workers", GAUGE, LS_NONE, workers, "Worker processes configured."),
	M("reloads_total", COUNTER, LS_NONE, srv.reloads, "Reloads of the configuration that took effect."),
	M("reload_failures_total", COUNTER, LS_NONE, srv.reload_failures,
	    "Reloads refused; the running configuration stayed."),
	M("worker_restarts_total", COUNTER, LS_NONE, srv.worker_restarts,
	    "Children (workers, the cache manager) started again after they died."),
	M("manager_passes_total", COUNTER, LS_NONE, srv.maint_passes,
	    "Maintenance passes of the cache manager (expiry, eviction, promotion)."),
	M("connections_current", GAUGE, LS_NONE, srv.conns_current, "Client connections open now."),
	M("connections_total", COUNTER, LS_NONE, srv.conns_total, "Client connections accepted."),
	M("connections_rejected_total", COUNTER, LS_NONE, srv.conns_rejected,
	    "Connections over max_connections, answered BUSY and closed."),
	M("accept_pauses_total", COUNTER, LS_NONE, srv.accept_pauses,
	    "Times a worker stopped accepting for a while because accept failed (EMFILE, ENFILE)."),
	M("timeouts_total", COUNTER, LS_KIND, srv.timeouts,
	    "Connections closed by idle_timeout (kind idle) or request_timeout (kind request)."),
	M("requests_total", COUNTER, LS_OP_STATUS, requests,
	    "Requests answered, by operation and response status."),
	M("requests_denied_total", COUNTER, LS_NONE, srv.denied,
	    "Requests refused by a listener's allow lists (also counted as status denied)."),
	M("goaways_total", COUNTER, LS_NONE, srv.goaways,
	    "GOAWAY frames sent (reload, stop, or a connection the server closes)."),
	M("bad_frames_total", COUNTER, LS_NONE, srv.bad_frames,
	    "Frames with a bad magic or an unsupported version; their connection was closed."),
	M("bytes_in_total", COUNTER, LS_NONE, srv.bytes_in, "Bytes read from client sockets."),
	M("bytes_out_total", COUNTER, LS_NONE, srv.bytes_out,
	    "Bytes written to client sockets (not those read through passed descriptors)."),
	M("descriptors_passed_total", COUNTER, LS_NONE, srv.fds_passed, "Descriptors sent to clients."),
	M("descriptors_received_total", COUNTER, LS_NONE, srv.fds_received,
	    "Descriptors received from clients (PUT from a descriptor)."),
	M("datagrams_total", COUNTER, LS_DIR, srv.dgrams, "UDP datagrams received (dir in) and sent (dir out)."),
	M("datagrams_dropped_total", COUNTER, LS_NONE, srv.dgrams_dropped,
	    "UDP datagrams dropped unanswered (not a frame)."),
	M("datagrams_limited_total", COUNTER, LS_NONE, srv.dgrams_limited,
	    "UDP responses cut to the amplification limit."),
	M("http_responses_total", COUNTER, LS_CLASS, srv.http_responses,
	    "HTTP responses (http listeners), by status class; also counted in requests_total."),
	M("gets_total", COUNTER, LS_NONE, store.gets, "Objects looked up to be read (hits and misses)."),
	M("hits_total", COUNTER, LS_TIER, store.hits, "Objects found and opened, by the tier they were read from."),
	M("misses_total", COUNTER, LS_NONE, store.misses, "Objects looked up that did not exist or had expired."),
	M("puts_total", COUNTER, LS_NONE, store.puts, "Objects stored."),
	M("put_bytes_total", COUNTER, LS_NONE, store.put_bytes, "Bytes of the objects stored."),
	M("puts_superseded_total", COUNTER, LS_NONE, store.superseded,
	    "PUTs overtaken by a newer concurrent PUT of the same URI."),
	M("deletes_total", COUNTER, LS_NONE, store.deletes, "Objects removed by DELETE."),
	M("objects_purged_total", COUNTER, LS_NONE, srv2.purged, "Objects removed by PURGE."),
	M("evictions_total", COUNTER, LS_TIER, store.evicted, "Objects evicted to make room, by tier."),
	M("index_evictions_total", COUNTER, LS_NONE, store.index_evicted,
	    "Objects evicted for a new entry because the index was full (also in evictions_total)."),
	M("packs_removed_total", COUNTER, LS_NONE, store.packs_removed,
	    "Packs of small objects removed whole by the compaction (their live objects copied), or found empty."),
	M("copies_dropped_total", COUNTER, LS_NONE, store.copies_dropped,
	    "Memory-tier copies of persistent objects dropped."),
	M("promotions_total", COUNTER, LS_NONE, store.promoted,
	    "Persistent objects copied into the memory tier."),
	M("expirations_total", COUNTER, LS_NONE, store.expired, "Expired objects removed."),
	M("lost_files_total", COUNTER, LS_NONE, store.lost_files,
	    "Index entries removed because their file had vanished."),
	M("scrub_objects_total", COUNTER, LS_NONE, store.scrubbed,
	    "Objects read again by the scrub (or VERIFY) and found intact."),
	M("scrub_bytes_total", COUNTER, LS_NONE, store.scrub_bytes, "Bytes read again by the scrub."),
	M("scrub_passes_total", COUNTER, LS_NONE, store.scrub_passes,
	    "Passes of the scrub over the whole store completed."),
	M("objects_damaged_total", COUNTER, LS_NONE, store.damaged,
	    "Objects (or memory copies) whose bytes did not match their checksum: quarantined."),
	M("objects", GAUGE, LS_TIER, objects,
	    "Objects held, by tier: memory has ephemeral objects and copies, persistent the rest."),
	M("objects_ephemeral", GAUGE, LS_NONE, use.ephemeral, "Ephemeral objects (memory tier only)."),
	M("objects_copies", GAUGE, LS_NONE, use.copies, "Persistent objects with a copy in the memory tier."),
	M("index_objects", GAUGE, LS_NONE, ix.objects,
	    "Index entries: every object once, whatever copies it has."),
	M("bytes", GAUGE, LS_TIER, use.used, "Bytes of the objects held, by tier."),
	M("limit_bytes", GAUGE, LS_TIER, use.limit,
	    "Size of each tier in bytes (a share of its filesystem resolved); 0: none of its own."),
	M("index_capacity", GAUGE, LS_NONE, ix.capacity, "Objects the index can hold."),
	M("index_arena_bytes", GAUGE, LS_NONE, ix.arena_bytes, "Bytes of the index's block storage."),
	M("index_arena_used_bytes", GAUGE, LS_NONE, ix.arena_used,
	    "Bytes of the block storage carved into blocks (live or free)."),
	M("index_segment_bytes", GAUGE, LS_NONE, ix.segment_bytes, "Bytes of the shared index segment."),
	M("lock_owner_deaths_repaired_total", COUNTER, LS_NONE, ix.owner_deaths,
	    "Index locks whose owner died holding them, repaired."),
};

static void
lower(char *dst, const char *src, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n && src[i]; i++)
		dst[i] = (char)(src[i] >= 'A' && src[i] <= 'Z' ? src[i] - 'A' + 'a' : src[i]);
	dst[i] = '\0';
}

/* The labels of series i of a set: "" or {k="v",...}. */
static void
labels(char *buf, size_t n, unsigned ls, unsigned i)
{
	char op[16], st[32];

	switch (ls) {
	case LS_OP_STATUS:
		if (i / NSTATUS < OM_ARRAY_LEN(label_ops))
			lower(op, om_proto_op_name(label_ops[i / NSTATUS]), sizeof(op));
		else
			snprintf(op, sizeof(op), "other");
		lower(st, om_proto_status_name(i % NSTATUS), sizeof(st));
		snprintf(buf, n, "{op=\"%s\",status=\"%s\"}", op, st);
		break;
	case LS_TIER: snprintf(buf, n, "{tier=\"%s\"}", tier_values[i]); break;
	case LS_KIND: snprintf(buf, n, "{kind=\"%s\"}", kind_values[i]); break;
	case LS_DIR: snprintf(buf, n, "{dir=\"%s\"}", dir_values[i]); break;
	case LS_CLASS: snprintf(buf, n, "{class=\"%s\"}", class_values[i]); break;
	default: buf[0] = '\0'; break;
	}
}

/* Sums every process's slot (workers, manager, master, the retired),
 * reads the shared usage, and computes what is not a counter. */
static void
sum_all(om_srv_t *srv, sums_t *s)
{
	om_srv_stats_sh_t *master = om_srv_stats(srv, srv->master_slot);
	uint64_t now = (uint64_t)om_time_s(), started;

	memset(s, 0, sizeof(*s));
	for (unsigned slot = 0; slot < om_index_procs(srv->ix); slot++) {
		const om_srv_stats_sh_t *p = om_srv_stats(srv, slot);
		const om_srv_stats2_sh_t *p2 = om_srv_stats2(srv, slot);
		const om_store_stats_t *q = om_store_slot_stats(srv->st, slot);

		if (p != NULL)
			add_u64s((uint64_t *)&s->srv, (const uint64_t *)p, sizeof(*p) / 8, 0);
		if (p2 != NULL)
			add_u64s((uint64_t *)&s->srv2, (const uint64_t *)p2, sizeof(*p2) / 8, 0);
		if (q != NULL)
			add_u64s((uint64_t *)&s->store, (const uint64_t *)q, sizeof(*q) / 8, 0);
	}
	om_index_usage(srv->ix, &s->ix);
	om_store_usage(srv->st, &s->use);
	started = master != NULL ? OM_LOAD(&master->started_at) : 0;
	s->uptime = started && now > started ? now - started : 0;
	s->generation = srv->generation;
	s->workers = srv->conf->daemon.workers;
	for (unsigned st = 0; st < NSTATUS; st++) {
		for (unsigned k = 0; k < OM_ARRAY_LEN(label_ops); k++)
			s->requests[k][st] = om_srv_responses(&s->srv, &s->srv2, label_ops[k])[st];
		/* Op 0 holds refused frames (and HTTP's refused connections).
		 * Under GOAWAY the server's own GOAWAYs, which goaways_total
		 * has: those of status OK left out here, the others (BUSY
		 * refusing a connection, BAD_REQUEST closing one) counted as
		 * other; and a client's GOAWAY frames, refused as UNKNOWN_OP. */
		s->requests[NOPS - 1][st] = s->srv.responses[0][st] +
		    (st != OM_STATUS_OK ? s->srv.responses[OM_OP_GOAWAY][st] : 0);
	}
	/* A promoted object is in both tiers; an ephemeral one only in memory. */
	s->objects[0] = s->use.ephemeral + s->use.copies;
	s->objects[1] = s->use.objects > s->use.ephemeral ? s->use.objects - s->use.ephemeral : 0;
}

typedef struct {
	char *buf;
	size_t len, cap;
	int failed;
} text_t;

/* Appends to t, growing it; a failure sticks and is checked at the end. */
__attribute__((format(printf, 2, 3))) static void
put(text_t *t, const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	while (!t->failed) {
		va_start(ap, fmt);
		n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		if (n < 0 || (p = realloc(t->buf, t->cap * 2)) == NULL) {
			t->failed = 1;
			return;
		}
		t->buf = p;
		t->cap *= 2;
	}
}

char *
om_srv_stats_text(om_srv_t *srv, unsigned flags, size_t *len)
{
	int prom = (flags & OM_STATS_PROMETHEUS) != 0;
	const char *prefix = prom ? "objmapper_" : "";
	text_t t = { malloc(8192), 0, 8192, 0 };
	char lb[64];
	sums_t s;

	if (t.buf == NULL)
		return NULL;
	sum_all(srv, &s);
	for (size_t m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {
		const metric_t *d = &metrics[m];
		const uint64_t *v = (const uint64_t *)(const void *)((const char *)&s + d->off);

		if (prom)
			put(&t, "# HELP objmapper_%s %s\n# TYPE objmapper_%s %s\n", d->name, d->help, d->name,
			    d->type == COUNTER ? "counter" : "gauge");
		for (unsigned i = 0; i < series(d->ls); i++) {
			if (!prom && d->ls == LS_OP_STATUS && v[i] == 0)
				continue;
			labels(lb, sizeof(lb), d->ls, i);
			put(&t, "%s%s%s %llu\n", prefix, d->name, lb, (unsigned long long)v[i]);
		}
	}
	if (t.failed) {
		free(t.buf);
		return NULL;
	}
	*len = t.len;
	return t.buf;
}
