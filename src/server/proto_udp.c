/*
 * UDP listeners: each datagram is one request of the binary protocol
 * (proto_bin.c), run on the listener's pseudo-connection, and its answer
 * one datagram, bounded by max_datagram and by the amplification limit.
 * Worker processes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "server/protocols.h"

/*
 * A UDP listener runs each datagram on a pseudo-connection: the same
 * checks and operations as a stream, one request per datagram (bytes after
 * its frame are padding), and the response gathered into one datagram of
 * at most max_datagram bytes and at most `amplification` times the
 * request's bytes. A response over that limit is replaced by a short
 * TOO_LARGE (or dropped if even that does not fit), so that a forged
 * source address never gets more than that factor of what was sent.
 */
static conn_t *
udp_conn(worker_t *w, wlistener_t *l)
{
	conn_t *c;

	if (l->dgram != NULL)
		return l->dgram;
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->in = malloc(IN_CAP)) == NULL) {
		free(c);
		return NULL;
	}
	c->w = w;
	c->ls = l->ls;
	c->proto = &conn_proto_bin;
	c->fd = l->ls->fd;
	c->put_fd = -1;
	c->dgram = true;
	l->dgram = c;
	return c;
}

void
conn_udp_free(wlistener_t *l)
{
	conn_t *c = l->dgram;

	if (c == NULL)
		return;
	conn_out_clear(c);
	free(c->in);
	free(c->bounce);
	free(c);
	l->dgram = NULL;
}

/* What the request's answer became, for the count by status. */
static void
recount(conn_t *c, unsigned op, unsigned from, unsigned to)
{
	uint64_t *row = om_srv_responses(c->w->stats, c->w->stats2, op);

	if (op > OM_OP_MAX)
		return;
	OM_STORE(&row[from], row[from] - 1);
	OM_COUNT(row[to], 1);
}

static void
udp_one(conn_t *c, size_t n, const struct sockaddr *from, socklen_t fromlen)
{
	static uint8_t dg[IN_CAP];
	om_srv_stats_sh_t *stats = c->w->stats;
	const om_listener_t *ls = c->ls;
	size_t limit = ls->max_datagram, len = 0;
	bool whole = true;
	om_req_t q;

	c->in_off = 0;
	c->in_len = n;
	c->state = ST_HEADER;
	c->closing = false;
	c->dgram_done = false;
	c->offset_reads = false;
	c->left = 0;
	om_peer_from_sockaddr(&c->peer, from);
	c->access = om_peer_access(ls, &c->peer);
	if ((uint64_t)ls->amplification * n < limit)
		limit = ls->amplification * n;

	/* Not a frame: no answer to whoever it claims to come from. */
	if (n < OM_REQ_HDR_LEN || om_get16(c->in) != OM_PROTO_MAGIC) {
		OM_COUNT(stats->dgrams_dropped, 1);
		return;
	}
	(void)om_proto_get_req(c->in, &q);
	(void)conn_bin_process(c);
	if (c->state == ST_BODY) {
		/* The datagram ended inside the PUT's bytes: nothing is stored. */
		om_store_put_abort(c->txn);
		c->txn = NULL;
		conn_bin_error(c, &c->req, OM_STATUS_BAD_REQUEST, "the datagram holds %llu of the %llu bytes",
		    (unsigned long long)(c->req.body_len - c->left), (unsigned long long)c->req.body_len);
	} else if (c->out_head == NULL) {
		conn_bin_error(c, &q, OM_STATUS_BAD_REQUEST, "the datagram ends inside the request");
	}
	c->state = ST_HEADER;

	for (out_t *o = c->out_head; o != NULL; o = o->next) {
		if (o->kind != OUT_BUF || o->ref.fd >= 0 || len + o->len > sizeof(dg)) {
			whole = false; /* cannot happen: GETs over UDP are inline buffers */
			break;
		}
		memcpy(dg + len, o->data, (size_t)o->len);
		len += (size_t)o->len;
	}
	if (!whole || len > limit) {
		om_resp_t h = { 0 };
		char msg[200];
		int m;
		unsigned old = om_get16(dg + 8);

		if (!whole)
			m = snprintf(msg, sizeof(msg), "cannot answer this over UDP");
		else if (len > ls->max_datagram)
			m = snprintf(msg, sizeof(msg), "response of %zu bytes is too large for UDP (max %u)",
			    len, ls->max_datagram);
		else
			/* The length first: the message is cut to what the limit
			 * leaves, which is least for the short requests it is for. */
			m = snprintf(msg, sizeof(msg), "pad to %zu bytes: a response of %zu bytes is over %u "
			    "times the request's %zu", (len + ls->amplification - 1) / ls->amplification, len,
			    ls->amplification, n);
		OM_COUNT(stats->dgrams_limited, 1);
		if (limit < OM_RESP_HDR_LEN || m < 0) {
			recount(c, q.op, old, OM_STATUS_TOO_LARGE);
			goto done; /* not even a header fits: silence */
		}
		if ((size_t)m > limit - OM_RESP_HDR_LEN)
			m = (int)(limit - OM_RESP_HDR_LEN);
		h.op = q.op;
		h.id = q.id;
		h.status = OM_STATUS_TOO_LARGE;
		h.msg_len = (uint16_t)m;
		om_proto_put_resp(dg, &h);
		memcpy(dg + OM_RESP_HDR_LEN, msg, (size_t)m);
		len = OM_RESP_HDR_LEN + (size_t)m;
		if (whole)
			recount(c, q.op, old, OM_STATUS_TOO_LARGE);
	}
	if (sendto(c->fd, dg, len, MSG_DONTWAIT | MSG_NOSIGNAL, from, fromlen) == (ssize_t)len) {
		OM_COUNT(stats->dgrams[OM_DGRAM_OUT], 1);
		OM_COUNT(stats->bytes_out, len);
	} else {
		om_log_debug(errno, "sendto %s failed", c->peer.name);
	}
done:
	conn_out_clear(c);
	c->out_bytes = 0;
	c->inflight = 0;
}

void
conn_udp_input(worker_t *w, wlistener_t *l)
{
	conn_t *c = udp_conn(w, l);

	if (c == NULL)
		return;
	/* A bounded batch: the other events of this worker get their turn. */
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = recvfrom(l->ls->fd, c->in, IN_CAP, MSG_DONTWAIT | MSG_TRUNC,
		    (struct sockaddr *)&from, &fromlen);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				om_log_warn_limited(errno, "recvfrom on %s failed", l->ls->where);
			return;
		}
		OM_COUNT(w->stats->dgrams[OM_DGRAM_IN], 1);
		OM_COUNT(w->stats->bytes_in, (uint64_t)n);
		if ((size_t)n > IN_CAP) {
			OM_COUNT(w->stats->dgrams_dropped, 1);
			continue;
		}
		udp_one(c, (size_t)n, (struct sockaddr *)&from, fromlen);
	}
}
