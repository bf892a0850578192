/*
 * vmod_objmapper: objmapperd as Varnish's persistent second-level cache.
 * The VCL object objmapper.cache and its director, whose gethdrs serves an object from objmapperd or
 * takes the origin's response and pushes the write-through (vmod_vfp.c).
 * Runs in varnishd's worker process: vcl_init and vcl_fini in its CLI
 * thread, fetches in its worker threads.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache_varnishd.h"
#include "cache/cache_director.h"
#include "cache/cache_filter.h"
#include "vcl.h"
#include "vtim.h"
#include "vsha256.h"

#include "vcc_objmapper_if.h"
#include "VSC_objmapper.h"
#include "vmod_objmapper.h"

/* ---- the fetch's state -------------------------------------------------- */

static void v_matchproto_(vmod_priv_fini_f)
task_fini(VRT_CTX, void *p)
{
	struct omv_task *t;

	(void)ctx;
	CAST_OBJ_NOTNULL(t, p, OMV_TASK_MAGIC);
	omv_task_release(t);
	FREE_OBJ(t);
}

static const struct vmod_priv_methods task_methods[1] = {{
	.magic = VMOD_PRIV_METHODS_MAGIC,
	.type = "objmapper fetch",
	.fini = task_fini,
}};

/* A fresh state for this fetch (a retry reuses and resets the last one). */
static struct omv_task *
task_new(VRT_CTX, omv_cache_t *c)
{
	struct vmod_priv *p = VRT_priv_task(ctx, c);
	struct omv_task *t;

	if (p == NULL)
		return (NULL);
	if (p->priv != NULL) {
		CAST_OBJ_NOTNULL(t, p->priv, OMV_TASK_MAGIC);
		omv_task_release(t);
		memset(t, 0, sizeof(*t));
		t->magic = OMV_TASK_MAGIC;
	} else {
		ALLOC_OBJ(t, OMV_TASK_MAGIC);
		if (t == NULL)
			return (NULL);
		p->priv = t;
		p->methods = task_methods;
	}
	t->c = c;
	t->spool_fd = -1;
	t->obj.fd = -1;
	return (t);
}

static struct omv_task *
task_get(VRT_CTX, const omv_cache_t *c)
{
	struct vmod_priv *p = VRT_priv_task_get(ctx, c);
	struct omv_task *t;

	if (p == NULL || p->priv == NULL)
		return (NULL);
	CAST_OBJ_NOTNULL(t, p->priv, OMV_TASK_MAGIC);
	return (t);
}

/* ---- lookup ------------------------------------------------------------- */

enum lookup { L_MISS, L_HIT, L_STALE, L_ERROR };

static void
drop_obj(struct omv_task *t)
{
	if (t->have_obj)
		om_object_free(&t->obj);
	t->have_obj = 0;
	memset(&t->meta, 0, sizeof(t->meta));
}

/* GET uri with its metadata into t->obj, parsed into t->meta. */
static enum lookup
get(VRT_CTX, struct omv_task *t, const char *uri)
{
	int rc;

	drop_obj(t);
	rc = om_client_get(t->h, uri, OM_MODE_AUTO, OM_GET_WANT_META, &t->obj);
	if (rc == -OM_STATUS_NOT_FOUND)
		return (L_MISS);
	if (rc != 0) {
		omv_fail(ctx->vsl, t->c, rc, t->h, "lookup", uri);
		return (L_ERROR);
	}
	t->have_obj = 1;
	if (omv_meta_parse(t->obj.meta, t->obj.meta_len, &t->meta) != 0) {
		OMV_COUNT(t->c, errors);
		OMV_COUNT(t->c, err_other);
		VSLb(ctx->vsl, SLT_Error, "objmapper: lookup %s: an object this module did not "
		    "write (its metadata is not in its format): a miss", uri);
		drop_obj(t);
		return (L_MISS);
	}
	return (L_HIT);
}

/* The request's values of the marker's names, hashed as vmod_vfp.c does
 * when it writes the variant. */
static void
marker_names(struct omv_task *t)
{
	size_t off = 0, len;
	const char *l;

	t->vnames_len = 0;
	while ((l = omv_meta_line(&t->meta, &off, &len)) != NULL) {
		if (len == 0 || len > 255 || (size_t)t->vnames_len + len + 1 > sizeof(t->vnames)) {
			t->vnames_len = -1;
			return;
		}
		memcpy(t->vnames + t->vnames_len, l, len);
		t->vnames[t->vnames_len + (long)len] = '\n';
		t->vnames_len += (long)len + 1;
	}
}

static void
vary_key(const struct busyobj *bo, const struct omv_task *t, char *out, size_t n)
{
	uint8_t vh[VSHA256_LEN];

	omv_vary_hash(bo->bereq, t->vnames, (size_t)t->vnames_len, vh);
	omv_key_variant(out, n, t->key, t->marker_id, vh);
}

static enum lookup
lookup(VRT_CTX, struct omv_task *t)
{
	const struct busyobj *bo = ctx->bo;
	char vkey[OMV_KEY_MAX];
	const char *uri = t->key;
	enum lookup l;
	double now, age;

	OMV_COUNT(t->c, lookups);
	l = get(ctx, t, t->key);
	if (l == L_HIT && t->meta.kind == OMV_KIND_VARY) {
		t->has_marker = 1;
		t->marker_id = t->obj.info.id;
		marker_names(t);
		drop_obj(t);
		if (t->vnames_len <= 0) {
			VSLb(ctx->vsl, SLT_Error, "objmapper: lookup %s: a Vary marker without "
			    "names: a miss", t->key);
			t->has_marker = 0;
			l = L_MISS;
		} else {
			vary_key(bo, t, vkey, sizeof(vkey));
			uri = vkey;
			l = get(ctx, t, vkey);
			if (l == L_HIT && t->meta.kind != OMV_KIND_OBJECT) {
				drop_obj(t);
				l = L_MISS;
			}
		}
	}
	if (l == L_ERROR)
		return (l);
	if (l == L_MISS) {
		OMV_COUNT(t->c, misses);
		VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: miss %s", uri);
		return (l);
	}
	now = VTIM_real();
	age = now - t->meta.t_origin;
	if (age < t->meta.ttl) {
		VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: hit %s (%ju bytes, age %jd s)", uri,
		    (uintmax_t)t->obj.info.size, (intmax_t)age);
		return (L_HIT);
	}
	OMV_COUNT(t->c, misses);
	OMV_COUNT(t->c, stale);
	VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: miss %s: stale (age %.0f s, TTL %.0f s)", uri,
	    age, t->meta.ttl);
	if (age < t->meta.ttl + t->meta.grace)
		return (L_STALE); /* kept, in case the origin fails */
	drop_obj(t);
	return (L_MISS);
}

/* beresp from the object's metadata, its body from the object. */
static int
serve(VRT_CTX, struct omv_task *t)
{
	struct busyobj *bo = ctx->bo;
	struct vfp_entry *vfe;
	size_t off = 0, len;
	const char *l, *reason;
	struct vsl_log *vsl;
	double age;

	/* The http structure keeps pointers: everything goes to the workspace. */
	reason = WS_Printf(bo->ws, "%.*s", (int)(t->meta.reason_len < 255 ? t->meta.reason_len :
	    255), t->meta.reason);
	if (reason == NULL) {
		VSLb(ctx->vsl, SLT_Error, "objmapper: out of workspace");
		return (-1);
	}
	/* Varnish logs beresp whole once gethdrs returns: not each line too. */
	vsl = bo->beresp->vsl;
	bo->beresp->vsl = NULL;
	http_PutResponse(bo->beresp, "HTTP/1.1", (uint16_t)t->meta.status, reason);
	while ((l = omv_meta_line(&t->meta, &off, &len)) != NULL) {
		char *h = WS_Alloc(bo->ws, (unsigned)len + 1);

		if (h == NULL) {
			bo->beresp->vsl = vsl;
			VSLb(ctx->vsl, SLT_Error, "objmapper: out of workspace");
			return (-1);
		}
		memcpy(h, l, len);
		h[len] = '\0';
		http_SetHeader(bo->beresp, h);
	}
	http_PrintfHeader(bo->beresp, "Content-Length: %ju", (uintmax_t)t->obj.info.size);
	/* The origin's time: Varnish takes the TTL from it, which does not
	 * start again. */
	age = VTIM_real() - t->meta.t_origin;
	if (age >= 1)
		http_PrintfHeader(bo->beresp, "Age: %jd", (intmax_t)age);
	bo->beresp->vsl = vsl;
	bo->htc = WS_Alloc(bo->ws, sizeof(*bo->htc));
	if (bo->htc == NULL) {
		VSLb(ctx->vsl, SLT_Error, "objmapper: out of workspace");
		return (-1);
	}
	INIT_OBJ(bo->htc, HTTP_CONN_MAGIC);
	bo->htc->doclose = SC_NULL;
	bo->htc->content_length = (ssize_t)t->obj.info.size;
	bo->htc->body_status = t->obj.info.size > 0 ? BS_LENGTH : BS_NONE;
	t->off = 0;
	if (t->obj.info.size > 0) {
		vfe = VFP_Push(bo->vfc, &omv_vfp_body);
		if (vfe == NULL) {
			bo->htc = NULL;
			VSLb(ctx->vsl, SLT_Error, "objmapper: out of workspace");
			return (-1);
		}
		vfe->priv1 = t;
	} else {
		drop_obj(t);
	}
	return (0);
}

/* ---- the director ------------------------------------------------------- */

static int v_matchproto_(vdi_gethdrs_f)
omv_gethdrs(VRT_CTX, VCL_BACKEND d)
{
	omv_cache_t *c;
	struct busyobj *bo;
	struct omv_task *t;
	VCL_BACKEND be;
	enum lookup l = L_MISS;
	int rc;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	CHECK_OBJ_NOTNULL(d, DIRECTOR_MAGIC);
	CAST_OBJ_NOTNULL(c, d->priv, OMV_CACHE_MAGIC);
	bo = ctx->bo;
	CHECK_OBJ_NOTNULL(bo, BUSYOBJ_MAGIC);
	t = task_new(ctx, c);
	if (t == NULL) {
		VSLb(ctx->vsl, SLT_Error, "objmapper: out of workspace");
		return (-1);
	}
	/* Only what Varnish caches goes through objmapperd: a pass carries
	 * the client's credentials, and its answer is the client's alone. */
	if (!bo->uncacheable && strcmp(http_GetMethod(bo->bereq), "GET") == 0) {
		omv_key_base(t->key, sizeof(t->key), c->prefix, bo->digest);
		t->h = omv_pool_get(ctx, c, "lookup");
		if (t->h != NULL) {
			l = lookup(ctx, t);
			if (l == L_HIT) {
				omv_pool_put(c, &t->h);
				if (serve(ctx, t) != 0)
					return (-1);
				OMV_COUNT(c, hits);
				return (0);
			}
			if (l == L_ERROR)
				omv_pool_put(c, &t->h);
		}
	}
	be = VRT_DirectorResolve(ctx, c->origin);
	if (be == NULL) {
		VSLb(ctx->vsl, SLT_FetchError, "objmapper: the origin %s resolved to no backend",
		    VRT_BACKEND_string(c->origin));
		rc = -1;
	} else {
		CHECK_OBJ_NOTNULL(be->vdir, VCLDIR_MAGIC);
		AN(be->vdir->methods->gethdrs);
		rc = be->vdir->methods->gethdrs(ctx, be);
	}
	if (rc != 0) {
		/* The origin failed: a stale object within its grace is better
		 * than an error. */
		if (l == L_STALE && t->have_obj) {
			omv_pool_put(c, &t->h);
			AZ(bo->htc);
			VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: the origin failed: serving the stale "
			    "object");
			if (serve(ctx, t) != 0)
				return (-1);
			OMV_COUNT(c, grace_hits);
			return (0);
		}
		omv_pool_put(c, &t->h);
		return (rc);
	}
	t->be = be;
	t->origin_open = 1;
	drop_obj(t);
	if (t->h != NULL) {
		struct vfp_entry *vfe = VFP_Push(bo->vfc, &omv_vfp_write);

		if (vfe == NULL) {
			VSLb(ctx->vsl, SLT_Error, "objmapper: out of workspace: not written");
			omv_pool_put(c, &t->h);
		} else {
			vfe->priv1 = t;
			t->wt = OMV_WT_PENDING;
		}
	}
	return (0);
}

static void v_matchproto_(vdi_finish_f)
omv_finish(VRT_CTX, VCL_BACKEND d)
{
	omv_cache_t *c;
	struct omv_task *t;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	CHECK_OBJ_NOTNULL(ctx->bo, BUSYOBJ_MAGIC);
	CAST_OBJ_NOTNULL(c, d->priv, OMV_CACHE_MAGIC);
	t = task_get(ctx, c);
	if (t != NULL && t->origin_open) {
		t->origin_open = 0;
		AN(t->be->vdir->methods->finish);
		t->be->vdir->methods->finish(ctx, t->be);
		return;
	}
	/* Served from objmapperd: the connection was ours. */
	ctx->bo->htc = NULL;
	if (t != NULL)
		drop_obj(t);
}

static VCL_IP v_matchproto_(vdi_getip_f)
omv_getip(VRT_CTX, VCL_BACKEND d)
{
	omv_cache_t *c;
	struct omv_task *t;

	CAST_OBJ_NOTNULL(c, d->priv, OMV_CACHE_MAGIC);
	t = task_get(ctx, c);
	if (t != NULL && t->origin_open && t->be->vdir->methods->getip != NULL)
		return (t->be->vdir->methods->getip(ctx, t->be));
	return (NULL);
}

static VCL_BOOL v_matchproto_(vdi_healthy_f)
omv_healthy(VRT_CTX, VCL_BACKEND d, VCL_TIME *changed)
{
	omv_cache_t *c;

	CAST_OBJ_NOTNULL(c, d->priv, OMV_CACHE_MAGIC);
	return (VRT_Healthy(ctx, c->origin, changed));
}

static stream_close_t v_matchproto_(vdi_http1pipe_f)
omv_http1pipe(VRT_CTX, VCL_BACKEND d)
{
	omv_cache_t *c;
	VCL_BACKEND be;

	CAST_OBJ_NOTNULL(c, d->priv, OMV_CACHE_MAGIC);
	be = VRT_DirectorResolve(ctx, c->origin);
	if (be == NULL || be->vdir->methods->http1pipe == NULL)
		return (SC_TX_ERROR);
	return (be->vdir->methods->http1pipe(ctx, be));
}

static void v_matchproto_(vdi_panic_f)
omv_panic(VCL_BACKEND d, struct vsb *vsb)
{
	omv_cache_t *c;

	CAST_OBJ_NOTNULL(c, d->priv, OMV_CACHE_MAGIC);
	VSB_printf(vsb, "socket = %s,\n", c->socket);
	VSB_printf(vsb, "origin = %s,\n", VRT_BACKEND_string(c->origin));
	VSB_printf(vsb, "conns = %u, idle = %u,\n", c->nconns, c->nidle);
}

static const struct vdi_methods omv_methods[1] = {{
	.magic = VDI_METHODS_MAGIC,
	.type = "objmapper",
	.http1pipe = omv_http1pipe,
	.healthy = omv_healthy,
	.gethdrs = omv_gethdrs,
	.getip = omv_getip,
	.finish = omv_finish,
	.panic = omv_panic,
}};

/* ---- VCL ---------------------------------------------------------------- */

static int
prefix_ok(const char *p)
{
	if (*p != '/' || strlen(p) > OMV_PREFIX_MAX)
		return (0);
	for (; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
			return (0);
	return (1);
}

VCL_VOID
vmod_cache__init(VRT_CTX, struct VPFX(objmapper_cache) **cp, const char *vcl_name,
    VCL_BACKEND origin, VCL_STRING socket, VCL_DURATION timeout, VCL_DURATION backoff,
    VCL_INT connections, VCL_STRING prefix, VCL_BYTES max_size, VCL_STRING spool)
{
	omv_cache_t *c;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	AN(cp);
	AZ(*cp);
	if (origin == NULL) {
		VRT_fail(ctx, "objmapper.cache %s: no origin backend", vcl_name);
		return;
	}
	if (socket == NULL || *socket == '\0') {
		VRT_fail(ctx, "objmapper.cache %s: socket is empty", vcl_name);
		return;
	}
	if (!(timeout > 0 && timeout <= 3600)) {
		VRT_fail(ctx, "objmapper.cache %s: timeout must be above 0 and at most 1h",
		    vcl_name);
		return;
	}
	if (!(backoff >= 0 && backoff <= 3600)) {
		VRT_fail(ctx, "objmapper.cache %s: backoff must be 0 to 1h", vcl_name);
		return;
	}
	if (connections < 1 || connections > 65536) {
		VRT_fail(ctx, "objmapper.cache %s: connections must be 1 to 65536", vcl_name);
		return;
	}
	if (prefix == NULL || !prefix_ok(prefix)) {
		VRT_fail(ctx, "objmapper.cache %s: prefix must start with / and hold at most %d "
		    "printable characters, no space", vcl_name, OMV_PREFIX_MAX);
		return;
	}
	if (max_size < 0) {
		VRT_fail(ctx, "objmapper.cache %s: max_size is negative", vcl_name);
		return;
	}
	if (spool == NULL || (*spool != '\0' && *spool != '/')) {
		VRT_fail(ctx, "objmapper.cache %s: spool must be an absolute path or empty",
		    vcl_name);
		return;
	}
	ALLOC_OBJ(c, OMV_CACHE_MAGIC);
	AN(c);
	REPLACE(c->name, vcl_name);
	REPLACE(c->socket, socket);
	REPLACE(c->prefix, prefix);
	REPLACE(c->spool, spool);
	c->origin = origin;
	c->timeout_ms = (int)ceil(timeout * 1e3);
	c->backoff = backoff;
	c->max_conns = (unsigned)connections;
	c->max_size = (uint64_t)max_size;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of handles (pointers) */
	c->idle = calloc(c->max_conns, sizeof(c->idle[0]));
	AN(c->idle);
	AZ(pthread_mutex_init(&c->mtx, NULL));
	c->vsc = VSC_objmapper_New(NULL, &c->vsc_seg, "%s.%s", VCL_Name(ctx->vcl), vcl_name);
	AN(c->vsc);
	c->dir = VRT_AddDirector(ctx, omv_methods, c, "%s", vcl_name);
	AN(c->dir);
	*cp = c;
}

VCL_VOID
vmod_cache__fini(struct VPFX(objmapper_cache) **cp)
{
	omv_cache_t *c;

	TAKE_OBJ_NOTNULL(c, cp, OMV_CACHE_MAGIC);
	VRT_DelDirector(&c->dir);
	/* Every fetch has returned its connection: the VCL is cold. */
	assert(c->nidle == c->nconns);
	while (c->nidle > 0)
		om_client_close(c->idle[--c->nidle]);
	VSC_objmapper_Destroy(&c->vsc_seg);
	AZ(pthread_mutex_destroy(&c->mtx));
	free(c->idle);
	free(c->name);
	free(c->socket);
	free(c->prefix);
	free(c->spool);
	FREE_OBJ(c);
}

VCL_BACKEND
vmod_cache_backend(VRT_CTX, struct VPFX(objmapper_cache) *c)
{
	(void)ctx;
	CHECK_OBJ_NOTNULL(c, OMV_CACHE_MAGIC);
	return (c->dir);
}

/* The request's hash, where VCL has one: after vcl_hash on the client
 * side, or a backend fetch's. */
static const uint8_t *
digest_of(VRT_CTX, const char *what)
{
	if (ctx->bo != NULL)
		return (ctx->bo->digest);
	if (ctx->req != NULL && (ctx->method & (VCL_MET_HIT | VCL_MET_MISS | VCL_MET_PASS |
	    VCL_MET_PURGE | VCL_MET_DELIVER | VCL_MET_SYNTH)) != 0)
		return (ctx->req->digest);
	VRT_fail(ctx, "objmapper: %s needs the request's hash (after vcl_hash, or in a "
	    "backend subroutine)", what);
	return (NULL);
}

VCL_VOID
vmod_cache_purge(VRT_CTX, struct VPFX(objmapper_cache) *c)
{
	const uint8_t *digest;
	char key[OMV_KEY_MAX];
	om_client_t *h;
	int rc;

	CHECK_OBJ_NOTNULL(c, OMV_CACHE_MAGIC);
	if ((digest = digest_of(ctx, "purge()")) == NULL)
		return;
	omv_key_base(key, sizeof(key), c->prefix, digest);
	h = omv_pool_get(ctx, c, "purge");
	if (h == NULL) {
		VSLb(ctx->vsl, SLT_Error, "objmapper: purge %s: not done (objmapperd unavailable)",
		    key);
		return;
	}
	rc = om_client_delete(h, key);
	if (rc == 0) {
		OMV_COUNT(c, purges);
		VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: purged %s", key);
	} else if (rc == -OM_STATUS_NOT_FOUND) {
		VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: purge %s: not there", key);
	} else {
		omv_fail(ctx->vsl, c, rc, h, "purge", key);
	}
	omv_pool_put(c, &h);
}

/*
 * Every object under a prefix of keys: this cache's own (its namespace)
 * if the argument is empty, else the one given (another namespace, such
 * as the one before a change of `prefix`). objmapperd deletes in steps,
 * each a call bounded by `timeout`; the count, or -1 if it was not done
 * (or failed part way: what was deleted is counted in `purges` and the
 * log says how many).
 */
VCL_INT
vmod_cache_purge_prefix(VRT_CTX, struct VPFX(objmapper_cache) *c, VCL_STRING prefix)
{
	const char *p;
	om_client_t *h;
	uint64_t n = 0;
	int rc;

	CHECK_OBJ_NOTNULL(c, OMV_CACHE_MAGIC);
	if ((ctx->method & (VCL_MET_TASK_C | VCL_MET_TASK_B)) == 0) {
		VRT_fail(ctx, "objmapper: purge_prefix() in a client or backend subroutine only");
		return (-1);
	}
	p = prefix != NULL && *prefix != '\0' ? prefix : c->prefix;
	h = omv_pool_get(ctx, c, "purge_prefix");
	if (h == NULL) {
		VSLb(ctx->vsl, SLT_Error, "objmapper: purge_prefix %s: not done (objmapperd "
		    "unavailable)", p);
		return (-1);
	}
	rc = om_client_purge(h, p, &n);
	if (n > 0)
		omv_count(c, &c->vsc->purges, n);
	if (rc == 0) {
		VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: purged %ju objects under %s", (uintmax_t)n, p);
	} else {
		VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: purge_prefix %s: %ju objects deleted before "
		    "the failure", p, (uintmax_t)n);
		omv_fail(ctx->vsl, c, rc, h, "purge_prefix", p);
	}
	omv_pool_put(c, &h);
	return (rc == 0 ? (VCL_INT)n : -1);
}

VCL_STRING
vmod_cache_key(VRT_CTX, struct VPFX(objmapper_cache) *c)
{
	const uint8_t *digest;
	char key[OMV_KEY_MAX];

	CHECK_OBJ_NOTNULL(c, OMV_CACHE_MAGIC);
	if ((digest = digest_of(ctx, "key()")) == NULL)
		return (NULL);
	omv_key_base(key, sizeof(key), c->prefix, digest);
	return (WS_Copy(ctx->ws, key, -1));
}

VCL_BOOL
vmod_cache_healthy(VRT_CTX, struct VPFX(objmapper_cache) *c)
{
	double until;

	(void)ctx;
	CHECK_OBJ_NOTNULL(c, OMV_CACHE_MAGIC);
	AZ(pthread_mutex_lock(&c->mtx));
	until = c->down_until;
	AZ(pthread_mutex_unlock(&c->mtx));
	return (VTIM_real() >= until);
}
