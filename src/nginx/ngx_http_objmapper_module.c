/*
 * ngx_http_objmapper_module: nginx serves objects of objmapperd. Each
 * request is one GET over a pipelined, non-blocking connection per worker
 * and location; an object that comes as a descriptor becomes a file buffer
 * that nginx sends with sendfile. Runs in nginx's worker processes, in
 * their event loop (libobjmapper's non-blocking API: nothing here blocks).
 */
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/un.h>

#include <objmapper/objmapper.h>

/* One objmapperd listener as one worker sees it: a connection, the
 * requests on it in order, what is still to be written. */
typedef struct {
	ngx_str_t addr;               /* as configured: "unix:PATH" */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ngx_msec_t timeout;
	ngx_connection_t *c;          /* NULL while not connected */
	om_decoder_t *dec;
	ngx_queue_t queue;            /* ngx_http_objmapper_ctx_t, in request order */
	u_char *out;                  /* encoded requests not yet written */
	size_t out_len, out_sent, out_cap;
	uint32_t next_id;
	uint32_t hello_id;            /* the HELLO of this connection, 0 once answered */
	ngx_log_t *log;
} ngx_http_objmapper_peer_t;

typedef struct {
	ngx_http_objmapper_peer_t *peer;
	ngx_http_complex_value_t *key;
	ngx_str_t miss;
	ngx_msec_t timeout;
} ngx_http_objmapper_loc_conf_t;

/* A request waiting for its object. */
typedef struct {
	ngx_http_request_t *r;
	ngx_http_objmapper_peer_t *peer;
	ngx_queue_t q;
	ngx_str_t key;                /* NUL-terminated */
	uint32_t id;
	unsigned sent:1;              /* in the output of the current connection */
	unsigned lost:2;              /* connections lost while it was in flight */
	unsigned goaways:3;
} ngx_http_objmapper_ctx_t;

static char *ngx_http_objmapper_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static void *ngx_http_objmapper_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_objmapper_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static void ngx_http_objmapper_peer_read(ngx_event_t *ev);
static void ngx_http_objmapper_peer_write(ngx_event_t *ev);
static void ngx_http_objmapper_lost(ngx_http_objmapper_peer_t *p, const char *why, int goaway);

static char *ngx_http_objmapper_check_miss(ngx_conf_t *cf, void *post, void *data);
static char *ngx_http_objmapper_check_timeout(ngx_conf_t *cf, void *post, void *data);

static ngx_conf_post_t ngx_http_objmapper_miss_post = { ngx_http_objmapper_check_miss };
static ngx_conf_post_t ngx_http_objmapper_timeout_post = { ngx_http_objmapper_check_timeout };

static ngx_command_t ngx_http_objmapper_commands[] = {
	{ ngx_string("objmapper_pass"),
	  NGX_HTTP_LOC_CONF | NGX_HTTP_LIF_CONF | NGX_CONF_TAKE1,
	  ngx_http_objmapper_pass,
	  NGX_HTTP_LOC_CONF_OFFSET,
	  0,
	  NULL },
	{ ngx_string("objmapper_key"),
	  NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
	  ngx_http_set_complex_value_slot,
	  NGX_HTTP_LOC_CONF_OFFSET,
	  offsetof(ngx_http_objmapper_loc_conf_t, key),
	  NULL },
	{ ngx_string("objmapper_miss"),
	  NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
	  ngx_conf_set_str_slot,
	  NGX_HTTP_LOC_CONF_OFFSET,
	  offsetof(ngx_http_objmapper_loc_conf_t, miss),
	  &ngx_http_objmapper_miss_post },
	{ ngx_string("objmapper_timeout"),
	  NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
	  ngx_conf_set_msec_slot,
	  NGX_HTTP_LOC_CONF_OFFSET,
	  offsetof(ngx_http_objmapper_loc_conf_t, timeout),
	  &ngx_http_objmapper_timeout_post },
	ngx_null_command
};

static ngx_http_module_t ngx_http_objmapper_module_ctx = {
	NULL,                                  /* preconfiguration */
	NULL,                                  /* postconfiguration */
	NULL,                                  /* create main configuration */
	NULL,                                  /* init main configuration */
	NULL,                                  /* create server configuration */
	NULL,                                  /* merge server configuration */
	ngx_http_objmapper_create_loc_conf,    /* create location configuration */
	ngx_http_objmapper_merge_loc_conf      /* merge location configuration */
};

ngx_module_t ngx_http_objmapper_module = {
	NGX_MODULE_V1,
	&ngx_http_objmapper_module_ctx,
	ngx_http_objmapper_commands,
	NGX_HTTP_MODULE,
	NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	NGX_MODULE_V1_PADDING
};

/* ---- answering a request ------------------------------------------------- */

/* Fields of the stored metadata nginx sets itself or that frame the
 * message (the same list as objmapperd's HTTP listener). */
static ngx_int_t
ngx_http_objmapper_reserved(const u_char *name, size_t n)
{
	static const char *const names[] = { "content-length", "transfer-encoding", "connection",
		"keep-alive", "upgrade", "trailer", "te", "date", "server", "etag", "last-modified",
		"accept-ranges", "content-range", "proxy-connection", "content-type" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (ngx_strlen(names[i]) == n && ngx_strncasecmp((u_char *)names[i], (u_char *)name, n) == 0)
			return 1;
	return 0;
}

/* The metadata's header lines ("Name: value", CRLF or LF), if it is such
 * lines: Content-Type sets the type, the others are added as they are. */
static ngx_int_t
ngx_http_objmapper_meta_headers(ngx_http_request_t *r, const u_char *m, size_t n,
    ngx_uint_t *has_fresh)
{
	size_t i = 0;

	*has_fresh = 0;
	while (i < n) {
		const u_char *nl = ngx_strlchr((u_char *)m + i, (u_char *)m + n, '\n');
		size_t end = nl ? (size_t)(nl - m) : n, len = end - i, name = 0;
		ngx_table_elt_t *h;

		if (len > 0 && m[i + len - 1] == '\r')
			len--;
		while (name < len && m[i + name] != ':')
			name++;
		/* Not header lines (an opaque blob): nothing from it. */
		if (name == 0 || name == len)
			return NGX_OK;
		if (name == 12 && ngx_strncasecmp((u_char *)m + i, (u_char *)"content-type", 12) == 0) {
			size_t v = name + 1;

			while (v < len && m[i + v] == ' ')
				v++;
			r->headers_out.content_type.len = len - v;
			r->headers_out.content_type.data = ngx_pnalloc(r->pool, len - v);
			if (r->headers_out.content_type.data == NULL)
				return NGX_ERROR;
			ngx_memcpy(r->headers_out.content_type.data, m + i + v, len - v);
			r->headers_out.content_type_len = len - v;
		} else if (!ngx_http_objmapper_reserved(m + i, name)) {
			size_t v = name + 1;

			if ((name == 7 && ngx_strncasecmp((u_char *)m + i, (u_char *)"expires", 7) == 0) ||
			    (name == 13 && ngx_strncasecmp((u_char *)m + i, (u_char *)"cache-control", 13) == 0))
				*has_fresh = 1;
			while (v < len && m[i + v] == ' ')
				v++;
			h = ngx_list_push(&r->headers_out.headers);
			if (h == NULL)
				return NGX_ERROR;
			h->hash = 1;
			h->key.len = name;
			h->key.data = ngx_pnalloc(r->pool, name + (len - v));
			if (h->key.data == NULL)
				return NGX_ERROR;
			ngx_memcpy(h->key.data, m + i, name);
			h->value.len = len - v;
			h->value.data = h->key.data + name;
			ngx_memcpy(h->value.data, m + i + v, len - v);
		}
		i = end + 1;
	}
	return NGX_OK;
}

/* The object as the response: headers from its fields and metadata, the
 * body from its descriptor (a file buffer: sendfile) or its bytes. nginx's
 * filters do HEAD, Range and the conditional requests. */
static ngx_int_t
ngx_http_objmapper_send(ngx_http_request_t *r, ngx_http_objmapper_ctx_t *ctx, om_response_t *o)
{
	ngx_pool_cleanup_t *cln;
	ngx_table_elt_t *etag;
	ngx_chain_t out;
	ngx_buf_t *b;
	ngx_uint_t fresh = 0;
	ngx_int_t rc;

	r->headers_out.status = NGX_HTTP_OK;
	r->headers_out.content_length_n = (off_t)o->len;
	r->headers_out.last_modified_time = o->info.mtime;
	if (o->meta_len > 0 &&
	    ngx_http_objmapper_meta_headers(r, o->meta, o->meta_len, &fresh) != NGX_OK)
		return NGX_HTTP_INTERNAL_SERVER_ERROR;
	if (r->headers_out.content_type.len == 0) {
		ngx_str_set(&r->headers_out.content_type, "application/octet-stream");
		r->headers_out.content_type_len = r->headers_out.content_type.len;
	}
	if (!fresh && o->info.expires > 0) {
		ngx_table_elt_t *h = ngx_list_push(&r->headers_out.headers);

		if (h == NULL || (h->value.data = ngx_pnalloc(r->pool, sizeof("Mon, 28 Sep 1970 06:00:00 GMT"))) == NULL)
			return NGX_HTTP_INTERNAL_SERVER_ERROR;
		h->hash = 1;
		ngx_str_set(&h->key, "Expires");
		h->value.len = ngx_http_time(h->value.data, (time_t)o->info.expires) - h->value.data;
		r->headers_out.expires = h;
	}
	/* The entity tag of objmapperd's HTTP listener: "ID-CRC". */
	etag = ngx_list_push(&r->headers_out.headers);
	if (etag == NULL || (etag->value.data = ngx_pnalloc(r->pool, NGX_OFF_T_LEN + 12)) == NULL)
		return NGX_HTTP_INTERNAL_SERVER_ERROR;
	etag->hash = 1;
	ngx_str_set(&etag->key, "ETag");
	etag->value.len = ngx_sprintf(etag->value.data, "\"%uxL-%08xD\"", (uint64_t)o->info.id,
	    (uint32_t)o->info.crc) - etag->value.data;
	r->headers_out.etag = etag;
	r->allow_ranges = 1;

	b = ngx_calloc_buf(r->pool);
	if (b == NULL)
		return NGX_HTTP_INTERNAL_SERVER_ERROR;
	if (o->fd >= 0) {
		/* The descriptor is the request's until it ends, aborted or not. */
		ngx_pool_cleanup_file_t *clnf;

		cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_pool_cleanup_file_t));
		if (cln == NULL)
			return NGX_HTTP_INTERNAL_SERVER_ERROR;
		clnf = cln->data;
		clnf->fd = om_response_take_fd(o);
		clnf->name = ctx->key.data;
		clnf->log = r->pool->log;
		cln->handler = ngx_pool_cleanup_file;
		b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
		if (b->file == NULL)
			return NGX_HTTP_INTERNAL_SERVER_ERROR;
		b->file->fd = clnf->fd;
		b->file->name = ctx->key;
		b->file->log = r->connection->log;
		b->file_pos = 0;
		b->file_last = (off_t)o->len;
		b->in_file = o->len > 0;
	} else if (o->len > 0) {
		u_char *p = ngx_pnalloc(r->pool, (size_t)o->len);

		if (p == NULL)
			return NGX_HTTP_INTERNAL_SERVER_ERROR;
		ngx_memcpy(p, o->data, (size_t)o->len);
		b->pos = p;
		b->last = p + o->len;
		b->memory = 1;
	}
	b->last_buf = (r == r->main) ? 1 : 0;
	b->last_in_chain = 1;
	if (o->len == 0 && !b->last_buf)
		b->sync = 1;

	rc = ngx_http_send_header(r);
	if (rc == NGX_ERROR || rc > NGX_OK || r->header_only)
		return rc;
	out.buf = b;
	out.next = NULL;
	return ngx_http_output_filter(r, &out);
}

/* objmapper_miss names a location: a named one (@...) or a URI (/...);
 * anything else would be an internal redirect to a relative URI. */
static char *
ngx_http_objmapper_check_miss(ngx_conf_t *cf, void *post, void *data)
{
	ngx_str_t *v = data;

	(void)cf;
	(void)post;
	if (v->len < 2 || (v->data[0] != '@' && v->data[0] != '/'))
		return "must be a named location (@name) or a URI (/path)";
	return NGX_CONF_OK;
}

/* objmapper_timeout 0 would give up every connection at once. */
static char *
ngx_http_objmapper_check_timeout(ngx_conf_t *cf, void *post, void *data)
{
	ngx_msec_t *t = data;

	(void)cf;
	(void)post;
	if (*t == 0)
		return "must be more than 0";
	return NGX_CONF_OK;
}

/* A miss: the objmapper_miss location, or 404. */
static void
ngx_http_objmapper_miss(ngx_http_request_t *r)
{
	ngx_http_objmapper_loc_conf_t *lc = ngx_http_get_module_loc_conf(r, ngx_http_objmapper_module);

	if (lc->miss.len == 0) {
		ngx_http_finalize_request(r, NGX_HTTP_NOT_FOUND);
		return;
	}
	if (lc->miss.data[0] == '@')
		(void)ngx_http_named_location(r, &lc->miss);
	else
		(void)ngx_http_internal_redirect(r, &lc->miss, &r->args);
	ngx_http_finalize_request(r, NGX_DONE);
}

/* The request's answer has come (o), or its connection failed for good
 * (o == NULL: 502, or the miss location if there is one). */
static void
ngx_http_objmapper_done(ngx_http_objmapper_ctx_t *ctx, om_response_t *o, const char *why)
{
	ngx_http_request_t *r = ctx->r;
	ngx_connection_t *c = r->connection;
	ngx_http_objmapper_loc_conf_t *lc = ngx_http_get_module_loc_conf(r, ngx_http_objmapper_module);

	/* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): ctx is in the peer's queue (linked by the handler), which the analyzer cannot follow through ngx_queue's macros */
	ngx_queue_remove(&ctx->q);
	if (o == NULL) {
		ngx_log_error(NGX_LOG_ERR, c->log, 0, "objmapper: \"%V\" from %V: %s", &ctx->key,
		    &ctx->peer->addr, why);
		if (lc->miss.len > 0)
			ngx_http_objmapper_miss(r);
		else
			ngx_http_finalize_request(r, NGX_HTTP_BAD_GATEWAY);
	} else if (o->rc == -OM_STATUS_NOT_FOUND) {
		ngx_http_objmapper_miss(r);
	} else if (o->rc != 0) {
		ngx_log_error(NGX_LOG_ERR, c->log, 0, "objmapper: \"%V\" from %V: %s (%s)", &ctx->key,
		    &ctx->peer->addr, om_client_strerror(o->rc), o->msg);
		ngx_http_finalize_request(r, NGX_HTTP_BAD_GATEWAY);
	} else {
		ngx_http_finalize_request(r, ngx_http_objmapper_send(r, ctx, o));
	}
	ngx_http_run_posted_requests(c);
}

/* ---- the connection to objmapperd -------------------------------------- */

static ngx_http_objmapper_ctx_t *
ngx_http_objmapper_head(ngx_http_objmapper_peer_t *p)
{
	return ngx_queue_empty(&p->queue) ? NULL :
	    ngx_queue_data(ngx_queue_head(&p->queue), ngx_http_objmapper_ctx_t, q);
}

/* Appends an encoded request to the output. */
static ngx_int_t
ngx_http_objmapper_encode(ngx_http_objmapper_peer_t *p, om_request_t *rq)
{
	size_t need = OM_REQUEST_OVERHEAD + (rq->uri ? ngx_strlen(rq->uri) : 0);
	int n;

	if (p->out_sent == p->out_len)
		p->out_sent = p->out_len = 0;
	if (p->out_cap - p->out_len < need) {
		size_t cap = (p->out_len + need) * 2;
		u_char *b = ngx_alloc(cap, p->log);

		if (b == NULL)
			return NGX_ERROR;
		if (p->out_len > p->out_sent)
			ngx_memcpy(b, p->out + p->out_sent, p->out_len - p->out_sent);
		p->out_len -= p->out_sent;
		p->out_sent = 0;
		ngx_free(p->out);
		p->out = b;
		p->out_cap = cap;
	}
	rq->id = p->next_id++;
	if (p->next_id == 0)
		p->next_id = 1;
	n = om_request_encode(rq, p->out + p->out_len, p->out_cap - p->out_len);
	if (n < 0)
		return NGX_DECLINED;
	p->out_len += (size_t)n;
	return NGX_OK;
}

/* Encodes every request of the queue not yet in this connection's output. */
static void
ngx_http_objmapper_encode_queue(ngx_http_objmapper_peer_t *p)
{
	ngx_queue_t *q = ngx_queue_head(&p->queue);

	while (q != ngx_queue_sentinel(&p->queue)) {
		ngx_http_objmapper_ctx_t *ctx = ngx_queue_data(q, ngx_http_objmapper_ctx_t, q);
		/* Mode auto (0): small objects inline, larger ones as descriptors. */
		om_request_t rq = { .op = OM_OP_GET, .uri = (const char *)ctx->key.data,
			.flags = OM_GET_WANT_META };
		ngx_int_t rc;

		q = ngx_queue_next(q);
		if (ctx->sent)
			continue;
		rc = ngx_http_objmapper_encode(p, &rq);
		if (rc == NGX_DECLINED) {
			/* No object can have this key. */
			ngx_queue_remove(&ctx->q);
			ngx_http_objmapper_miss(ctx->r);
			ngx_http_run_posted_requests(ctx->r->connection);
			continue;
		}
		if (rc != NGX_OK) {
			ngx_http_objmapper_done(ctx, NULL, "out of memory");
			continue;
		}
		ctx->id = rq.id;
		ctx->sent = 1;
	}
}

/* Writes what the socket takes now. */
static void
ngx_http_objmapper_flush(ngx_http_objmapper_peer_t *p)
{
	while (p->c != NULL && p->out_sent < p->out_len) {
		ssize_t n = send(p->c->fd, p->out + p->out_sent, p->out_len - p->out_sent,
		    MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && ngx_errno == NGX_EINTR)
			continue;
		if (n < 0 && ngx_errno == NGX_EAGAIN) {
			if (ngx_handle_write_event(p->c->write, 0) != NGX_OK)
				ngx_http_objmapper_lost(p, "cannot wait for the socket", 0);
			return;
		}
		if (n < 0) {
			/* The daemon closed: what it answered (and its GOAWAY) is
			 * read before this connection is given up, by the read
			 * handler, which then finds the end of the stream. */
			p->out_sent = p->out_len;
			ngx_post_event(p->c->read, &ngx_posted_events);
			return;
		}
		p->out_sent += (size_t)n;
	}
}

/* While requests wait, the connection has a deadline: objmapper_timeout
 * from the last sign of life (connected, bytes from objmapperd). A request
 * queued (restart 0) keeps a deadline already running: new requests must
 * not keep a stalled daemon's connection, and those waiting on it, alive.
 * Idle, the connection may be closed when nginx exits. */
static void
ngx_http_objmapper_arm(ngx_http_objmapper_peer_t *p, int restart)
{
	if (p->c == NULL)
		return;
	if (ngx_queue_empty(&p->queue)) {
		if (p->c->read->timer_set)
			ngx_del_timer(p->c->read);
		p->c->idle = 1;
	} else {
		if (restart || !p->c->read->timer_set)
			ngx_add_timer(p->c->read, p->timeout);
		p->c->idle = 0;
	}
}

static void
ngx_http_objmapper_close(ngx_http_objmapper_peer_t *p)
{
	if (p->c != NULL) {
		ngx_close_connection(p->c);
		p->c = NULL;
	}
	if (p->dec != NULL)
		om_decoder_reset(p->dec);
	p->out_len = p->out_sent = 0;
}

/* Connects and queues HELLO and the waiting requests; on failure every
 * waiting request gets its answer (502 or the miss location). */
static void
ngx_http_objmapper_connect(ngx_http_objmapper_peer_t *p)
{
	struct sockaddr_un sa;
	om_request_t hello = { .op = OM_OP_HELLO, .flags = OM_HELLO_OFFSET_READS };
	ngx_connection_t *c;
	ngx_socket_t fd;
	char why[160];

	if (p->dec == NULL && om_decoder_new(&p->dec) != 0) {
		ngx_snprintf((u_char *)why, sizeof(why), "out of memory%Z");
		goto fail;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == (ngx_socket_t)-1) {
		ngx_snprintf((u_char *)why, sizeof(why), "socket() failed (%d: %s)%Z", ngx_errno,
		    strerror(ngx_errno));
		goto fail;
	}
	ngx_memzero(&sa, sizeof(sa));
	sa.sun_family = AF_UNIX;
	ngx_memcpy(sa.sun_path, p->path, ngx_strlen(p->path));
	/* A Unix socket connects at once, or not now (EAGAIN: its backlog is
	 * full) or not at all. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		ngx_err_t err = ngx_errno;

		ngx_snprintf((u_char *)why, sizeof(why), "connect() to %s failed (%d: %s)%Z", p->path, err,
		    strerror(err));
		close(fd);
		goto fail;
	}
	c = ngx_get_connection(fd, p->log);
	if (c == NULL) {
		close(fd);
		ngx_snprintf((u_char *)why, sizeof(why), "no free connection%Z");
		goto fail;
	}
	c->data = p;
	c->read->handler = ngx_http_objmapper_peer_read;
	c->write->handler = ngx_http_objmapper_peer_write;
	c->read->log = c->write->log = c->log = p->log;
	c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
	p->c = c;
	if (ngx_add_conn) {
		if (ngx_add_conn(c) == NGX_ERROR) {
			ngx_http_objmapper_close(p);
			ngx_snprintf((u_char *)why, sizeof(why), "cannot add the connection to the loop%Z");
			goto fail;
		}
	} else if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
		ngx_http_objmapper_close(p);
		ngx_snprintf((u_char *)why, sizeof(why), "cannot add the connection to the loop%Z");
		goto fail;
	}
	if (ngx_http_objmapper_encode(p, &hello) != NGX_OK) {
		ngx_http_objmapper_close(p);
		ngx_snprintf((u_char *)why, sizeof(why), "out of memory%Z");
		goto fail;
	}
	p->hello_id = hello.id;
	ngx_http_objmapper_encode_queue(p);
	ngx_http_objmapper_arm(p, 1);
	/* Written by the write handler, from the loop (never from here: a
	 * failed send ends in a reconnect, which is here). */
	ngx_post_event(c->write, &ngx_posted_events);
	return;

fail:
	for (ngx_http_objmapper_ctx_t *ctx; (ctx = ngx_http_objmapper_head(p)) != NULL;)
		ngx_http_objmapper_done(ctx, NULL, why);
}

/*
 * The connection is gone. After a GOAWAY, the requests it did not answer
 * were not processed: they go again on a new connection (a few times at
 * most). Otherwise their outcome is unknown: a GET is repeated once, then
 * answered 502 (or sent to the miss location).
 */
static void
ngx_http_objmapper_lost(ngx_http_objmapper_peer_t *p, const char *why, int goaway)
{
	ngx_queue_t *q;

	ngx_http_objmapper_close(p);
	q = ngx_queue_head(&p->queue);
	while (q != ngx_queue_sentinel(&p->queue)) {
		ngx_http_objmapper_ctx_t *ctx = ngx_queue_data(q, ngx_http_objmapper_ctx_t, q);

		q = ngx_queue_next(q);
		if (!ctx->sent)
			continue;
		ctx->sent = 0;
		if (goaway ? ctx->goaways++ >= 4 : ctx->lost++ >= 1)
			ngx_http_objmapper_done(ctx, NULL, why);
	}
	if (!ngx_queue_empty(&p->queue))
		ngx_http_objmapper_connect(p);
}

/* One response: the answer of the oldest request (or HELLO's, or GOAWAY). */
static ngx_int_t
ngx_http_objmapper_dispatch(ngx_http_objmapper_peer_t *p, om_response_t *o)
{
	ngx_http_objmapper_ctx_t *ctx;

	if (o->op == OM_OP_GOAWAY) {
		ngx_log_error(NGX_LOG_INFO, p->log, 0, "objmapper: %V is going away (%s)", &p->addr, o->msg);
		ngx_http_objmapper_lost(p, "the daemon kept going away", 1);
		return NGX_DONE;
	}
	if (p->hello_id != 0 && o->id == p->hello_id) {
		p->hello_id = 0;
		return NGX_OK;
	}
	ctx = ngx_http_objmapper_head(p);
	if (ctx == NULL || !ctx->sent || ctx->id != o->id) {
		ngx_log_error(NGX_LOG_ERR, p->log, 0, "objmapper: %V answered request %uD, unexpected",
		    &p->addr, o->id);
		ngx_http_objmapper_lost(p, "a response out of order", 0);
		return NGX_DONE;
	}
	ngx_http_objmapper_done(ctx, o, NULL);
	return NGX_OK;
}

static void
ngx_http_objmapper_peer_read(ngx_event_t *ev)
{
	ngx_connection_t *c = ev->data;
	ngx_http_objmapper_peer_t *p = c->data;
	om_response_t o;

	if (c->close) {
		/* nginx is exiting and this connection is idle. */
		ngx_http_objmapper_close(p);
		return;
	}
	if (ev->timedout) {
		ev->timedout = 0;
		ngx_log_error(NGX_LOG_ERR, p->log, NGX_ETIMEDOUT, "objmapper: %V did not answer", &p->addr);
		ngx_http_objmapper_lost(p, "timed out", 0);
		return;
	}
	for (;;) {
		int rc;

		while ((rc = om_decoder_next(p->dec, &o)) == 1) {
			ngx_int_t d = ngx_http_objmapper_dispatch(p, &o);

			om_response_free(&o);
			if (d == NGX_DONE)
				return;
		}
		if (rc < 0) {
			ngx_log_error(NGX_LOG_ERR, p->log, 0, "objmapper: %V: %s", &p->addr,
			    om_decoder_message(p->dec));
			ngx_http_objmapper_lost(p, om_decoder_message(p->dec), 0);
			return;
		}
		rc = om_decoder_recv(p->dec, c->fd);
		if (rc > 0)
			continue;
		if (rc == -OM_EAGAIN)
			break;
		ngx_http_objmapper_lost(p, rc == 0 ? "the daemon closed the connection" :
		    om_decoder_message(p->dec), 0);
		return;
	}
	if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
		ngx_http_objmapper_lost(p, "cannot wait for the socket", 0);
		return;
	}
	ngx_http_objmapper_arm(p, 1);
}

static void
ngx_http_objmapper_peer_write(ngx_event_t *ev)
{
	ngx_connection_t *c = ev->data;

	ngx_http_objmapper_flush(c->data);
}

/* ---- the content handler ------------------------------------------------- */

static ngx_int_t
ngx_http_objmapper_handler(ngx_http_request_t *r)
{
	ngx_http_objmapper_loc_conf_t *lc = ngx_http_get_module_loc_conf(r, ngx_http_objmapper_module);
	ngx_http_objmapper_peer_t *p = lc->peer;
	ngx_http_objmapper_ctx_t *ctx;
	ngx_str_t key;
	ngx_int_t rc;

	if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD)))
		return NGX_HTTP_NOT_ALLOWED;
	rc = ngx_http_discard_request_body(r);
	if (rc != NGX_OK)
		return rc;
	if (lc->key != NULL) {
		if (ngx_http_complex_value(r, lc->key, &key) != NGX_OK)
			return NGX_HTTP_INTERNAL_SERVER_ERROR;
	} else {
		key = r->uri;
	}
	ctx = ngx_pcalloc(r->pool, sizeof(*ctx));
	if (ctx == NULL)
		return NGX_HTTP_INTERNAL_SERVER_ERROR;
	ctx->key.data = ngx_pnalloc(r->pool, key.len + 1);
	if (ctx->key.data == NULL)
		return NGX_HTTP_INTERNAL_SERVER_ERROR;
	ngx_memcpy(ctx->key.data, key.data, key.len);
	ctx->key.data[key.len] = '\0';
	ctx->key.len = key.len;
	ctx->r = r;
	ctx->peer = p;
	if (p->log == NULL)
		p->log = ngx_cycle->log;
	r->main->count++;
	ngx_queue_insert_tail(&p->queue, &ctx->q);
	if (p->c == NULL) {
		ngx_http_objmapper_connect(p);
	} else {
		ngx_http_objmapper_encode_queue(p);
		ngx_http_objmapper_arm(p, 0);
		/* Written once the loop has run every handler of this turn: the
		 * requests of all of them leave in one send. */
		ngx_post_event(p->c->write, &ngx_posted_events);
	}
	return NGX_DONE;
}

/* ---- configuration ------------------------------------------------------- */

static void *
ngx_http_objmapper_create_loc_conf(ngx_conf_t *cf)
{
	ngx_http_objmapper_loc_conf_t *lc = ngx_pcalloc(cf->pool, sizeof(*lc));

	if (lc == NULL)
		return NULL;
	lc->timeout = NGX_CONF_UNSET_MSEC;
	lc->key = NULL;
	return lc;
}

static char *
ngx_http_objmapper_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
	ngx_http_objmapper_loc_conf_t *prev = parent, *lc = child;

	(void)cf;
	ngx_conf_merge_msec_value(lc->timeout, prev->timeout, 10000);
	ngx_conf_merge_str_value(lc->miss, prev->miss, "");
	if (lc->key == NULL)
		lc->key = prev->key;
	/* An "if" block (or limit_except) of an objmapper_pass location keeps
	 * the location's handler, and so serves with this configuration: it
	 * takes the location's connection. Only the location that made the
	 * peer sets its timeout. */
	if (lc->peer != NULL)
		lc->peer->timeout = lc->timeout;
	else
		lc->peer = prev->peer;
	return NGX_CONF_OK;
}

static char *
ngx_http_objmapper_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
	ngx_http_objmapper_loc_conf_t *lc = conf;
	ngx_http_core_loc_conf_t *clcf;
	ngx_str_t *value = cf->args->elts, path;
	ngx_http_objmapper_peer_t *p;

	(void)cmd;
	if (lc->peer != NULL)
		return "is duplicate";
	if (value[1].len <= 5 || ngx_strncmp(value[1].data, "unix:", 5) != 0) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "objmapper_pass takes unix:PATH, not \"%V\"",
		    &value[1]);
		return NGX_CONF_ERROR;
	}
	path.data = value[1].data + 5;
	path.len = value[1].len - 5;
	p = ngx_pcalloc(cf->pool, sizeof(*p));
	if (p == NULL)
		return NGX_CONF_ERROR;
	if (path.len >= sizeof(p->path)) {
		ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "objmapper_pass: the path \"%V\" is too long", &path);
		return NGX_CONF_ERROR;
	}
	ngx_memcpy(p->path, path.data, path.len);
	p->addr = value[1];
	p->next_id = 1;
	ngx_queue_init(&p->queue);
	lc->peer = p;
	clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
	clcf->handler = ngx_http_objmapper_handler;
	return NGX_CONF_OK;
}
