/*
 * Statistics: every process counts in its own slot of the index segment
 * (no shared atomic on the hot path); STATS sums the slots. Called in
 * workers (counting, STATS) and in the master (retiring a dead child's
 * counters).
 */
#include <stdio.h>
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

static void
add_u64s(uint64_t *to, const uint64_t *from, size_t n, int reset)
{
	for (size_t i = 0; i < n; i++) {
		to[i] += OM_LOAD(&from[i]);
		if (reset)
			OM_STORE((uint64_t *)&from[i], 0);
	}
}

void
om_srv_stats_retire(om_srv_t *srv, unsigned slot)
{
	om_srv_stats_sh_t *from = om_srv_stats(srv, slot), *to = om_srv_stats(srv, OM_SLOT_RETIRED);
	om_store_stats_t *sfrom = (om_store_stats_t *)om_store_slot_stats(srv->st, slot);
	om_store_stats_t *sto = (om_store_stats_t *)om_store_slot_stats(srv->st, OM_SLOT_RETIRED);

	if (from == NULL || to == NULL || sfrom == NULL || sto == NULL)
		return;
	/* Open connections of a dead process are closed now. */
	OM_STORE(&from->conns_current, 0);
	add_u64s((uint64_t *)to, (const uint64_t *)from, sizeof(*from) / 8, 1);
	add_u64s((uint64_t *)sto, (const uint64_t *)sfrom, sizeof(*sfrom) / 8, 1);
}

typedef struct {
	char *buf;
	size_t len, cap;
} text_t;

static void
line(text_t *t, const char *name, uint64_t v)
{
	int n;

	if (t->cap - t->len < 128) {
		size_t cap = t->cap ? t->cap * 2 : 4096;
		char *p = realloc(t->buf, cap);

		if (p == NULL)
			return;
		t->buf = p;
		t->cap = cap;
	}
	n = snprintf(t->buf + t->len, t->cap - t->len, "%s %llu\n", name, (unsigned long long)v);
	if (n > 0)
		t->len += (size_t)n;
}

static void
lower(char *dst, const char *src, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n && src[i]; i++)
		dst[i] = (char)(src[i] >= 'A' && src[i] <= 'Z' ? src[i] - 'A' + 'a' : src[i]);
	dst[i] = '\0';
}

char *
om_srv_stats_text(om_srv_t *srv, unsigned flags, size_t *len)
{
	om_srv_stats_sh_t sum;
	om_store_stats_t ss;
	om_ix_usage_t iu;
	om_store_usage_t su;
	text_t t = { NULL, 0, 0 };
	char name[64], low[32];
	uint64_t now = (uint64_t)om_time_s();

	(void)flags;
	memset(&sum, 0, sizeof(sum));
	memset(&ss, 0, sizeof(ss));
	for (unsigned s = 0; s < om_index_procs(srv->ix); s++) {
		const om_store_stats_t *p = om_store_slot_stats(srv->st, s);

		add_u64s((uint64_t *)&sum, (const uint64_t *)om_srv_stats(srv, s), sizeof(sum) / 8, 0);
		if (p != NULL)
			add_u64s((uint64_t *)&ss, (const uint64_t *)p, sizeof(ss) / 8, 0);
	}
	sum.started_at = OM_LOAD(&om_srv_stats(srv, OM_SLOT_MASTER)->started_at);
	om_index_usage(srv->ix, &iu);
	om_store_usage(srv->st, &su);

	line(&t, "uptime_seconds", sum.started_at && now > sum.started_at ? now - sum.started_at : 0);
	line(&t, "generation", srv->generation);
	line(&t, "workers", srv->conf->daemon.workers);
	line(&t, "reloads_total", sum.reloads);
	line(&t, "reload_failures_total", sum.reload_failures);
	line(&t, "worker_restarts_total", sum.worker_restarts);
	line(&t, "connections_current", sum.conns_current);
	line(&t, "connections_total", sum.conns_total);
	for (unsigned op = OM_OP_HELLO; op < OM_OP_GOAWAY; op++) {
		uint64_t n = 0;

		for (unsigned st = 0; st <= OM_STATUS_MAX; st++)
			n += sum.responses[op][st];
		lower(low, om_proto_op_name(op), sizeof(low));
		snprintf(name, sizeof(name), "requests_%s_total", low);
		line(&t, name, n);
	}
	for (unsigned st = 0; st <= OM_STATUS_MAX; st++) {
		uint64_t n = 0;

		for (unsigned op = 0; op <= OM_OP_GOAWAY; op++)
			n += sum.responses[op][st];
		lower(low, om_proto_status_name(st), sizeof(low));
		snprintf(name, sizeof(name), "responses_%s_total", low);
		line(&t, name, n);
	}
	line(&t, "goaways_total", sum.goaways);
	line(&t, "bad_frames_total", sum.bad_frames);
	line(&t, "bytes_in_total", sum.bytes_in);
	line(&t, "bytes_out_total", sum.bytes_out);
	line(&t, "descriptors_passed_total", sum.fds_passed);
	line(&t, "descriptors_received_total", sum.fds_received);
	line(&t, "gets_total", ss.gets);
	line(&t, "hits_memory_total", ss.hits_mem);
	line(&t, "hits_persistent_total", ss.hits_disk);
	line(&t, "misses_total", ss.misses);
	line(&t, "puts_total", ss.puts);
	line(&t, "put_bytes_total", ss.put_bytes);
	line(&t, "puts_superseded_total", ss.superseded);
	line(&t, "deletes_total", ss.deletes);
	line(&t, "evictions_persistent_total", ss.evicted[OM_TIER_DISK]);
	line(&t, "evictions_memory_total", ss.evicted[OM_TIER_MEM]);
	line(&t, "copies_dropped_total", ss.copies_dropped);
	line(&t, "promotions_total", ss.promoted);
	line(&t, "expirations_total", ss.expired);
	line(&t, "lost_files_total", ss.lost_files);
	line(&t, "manager_passes_total", sum.maint_passes);
	line(&t, "objects", iu.objects);
	line(&t, "objects_ephemeral", su.ephemeral);
	line(&t, "objects_copies", su.copies);
	line(&t, "bytes_persistent", su.used[OM_TIER_DISK]);
	line(&t, "bytes_memory", su.used[OM_TIER_MEM]);
	line(&t, "limit_persistent_bytes", su.limit[OM_TIER_DISK]);
	line(&t, "limit_memory_bytes", su.limit[OM_TIER_MEM]);
	line(&t, "index_capacity", iu.capacity);
	line(&t, "index_arena_bytes", iu.arena_bytes);
	line(&t, "index_arena_used_bytes", iu.arena_used);
	line(&t, "index_segment_bytes", iu.segment_bytes);
	line(&t, "lock_owner_deaths_repaired_total", iu.owner_deaths);
	*len = t.len;
	return t.buf;
}
