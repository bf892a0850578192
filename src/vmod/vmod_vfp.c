/*
 * vmod_objmapper's fetch processors, in varnishd's worker process (fetch
 * threads): "objmapper" reads an object's body from objmapperd (a hit);
 * "objmapper_write" sits just above the origin's body and writes it
 * through into objmapperd, publishing only when the fetch completed.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache_varnishd.h"
#include "cache/cache_filter.h"
#include "vtim.h"
#include "vsha256.h"

#include "vcc_objmapper_if.h"
#include "VSC_objmapper.h"
#include "vmod_objmapper.h"

/* ---- the body of a hit -------------------------------------------------- */

static enum vfp_status v_matchproto_(vfp_pull_f)
body_pull(struct vfp_ctx *vc, struct vfp_entry *vfe, void *p, ssize_t *lp)
{
	struct omv_task *t;
	uint64_t left;
	size_t want;
	ssize_t n;

	CHECK_OBJ_NOTNULL(vc, VFP_CTX_MAGIC);
	CAST_OBJ_NOTNULL(t, vfe->priv1, OMV_TASK_MAGIC);
	AN(t->have_obj);
	left = t->obj.info.size - t->off;
	want = (size_t)*lp < left ? (size_t)*lp : (size_t)left;
	if (want == 0) {
		*lp = 0;
		return (VFP_END);
	}
	if (t->obj.fd < 0) {
		memcpy(p, (const char *)t->obj.data + t->off, want);
		n = (ssize_t)want;
	} else {
		/* At explicit offsets: the description may be shared. */
		do
			n = pread(t->obj.fd, p, want, (off_t)t->off);
		while (n < 0 && errno == EINTR);
		if (n <= 0) {
			OMV_COUNT(t->c, errors);
			OMV_COUNT(t->c, err_other);
			*lp = 0;
			return (VFP_Error(vc, "objmapper: reading %s at %ju: %s", t->key,
			    (uintmax_t)t->off, n == 0 ? "the file is shorter than its object" :
			    strerror(errno)));
		}
	}
	t->off += (uint64_t)n;
	*lp = n;
	return (t->off == t->obj.info.size ? VFP_END : VFP_OK);
}

static void v_matchproto_(vfp_fini_f)
body_fini(struct vfp_ctx *vc, struct vfp_entry *vfe)
{
	struct omv_task *t;

	CHECK_OBJ_NOTNULL(vc, VFP_CTX_MAGIC);
	CAST_OBJ_NOTNULL(t, vfe->priv1, OMV_TASK_MAGIC);
	if (t->have_obj) {
		om_object_free(&t->obj);
		t->have_obj = 0;
	}
}

const struct vfp omv_vfp_body = {
	.name = "objmapper",
	.pull = body_pull,
	.fini = body_fini,
};

/* ---- write-through ------------------------------------------------------ */

/* Why Varnish would not keep this response, or NULL. */
static const char *
refusal(const struct busyobj *bo, char *why, size_t n)
{
	const struct objcore *oc = bo->fetch_objcore;
	unsigned status = http_GetStatus(bo->beresp);
	const char *v;

	if (bo->uncacheable)
		return ("uncacheable (pass, hit-for-pass or hit-for-miss)");
	if (!omv_status_stored(status)) {
		snprintf(why, n, "status %u", status);
		return (why);
	}
	if (!(oc->ttl > 0)) {
		snprintf(why, n, "TTL %.3f", oc->ttl);
		return (why);
	}
	if (http_GetHdr(bo->beresp, H_Set_Cookie, NULL))
		return ("Set-Cookie");
	if (http_GetHdrToken(bo->beresp, H_Cache_Control, "private", NULL, NULL))
		return ("Cache-Control: private");
	if (http_GetHdrToken(bo->beresp, H_Cache_Control, "no-store", NULL, NULL))
		return ("Cache-Control: no-store");
	if (http_GetHdr(bo->beresp, H_Vary, &v) && strchr(v, '*') != NULL)
		return ("Vary: *");
	return (NULL);
}

/* The stored form of the response: status, times, reason, header lines. */
static int
build_meta(const struct busyobj *bo, char **out, size_t *len, size_t max)
{
	const struct objcore *oc = bo->fetch_objcore;
	const struct http *hp = bo->beresp;
	omv_buf_t b = { .cap = max };

	b.p = malloc(max ? max : 1);
	if (b.p == NULL)
		return (-1);
	omv_printf(&b, OMV_META_TAG "%c %u %.3f %.3f %.3f %.3f\n", OMV_KIND_OBJECT,
	    http_GetStatus(hp), oc->t_origin, oc->ttl, oc->grace, oc->keep);
	if (hp->hd[HTTP_HDR_REASON].b != NULL)
		omv_put(&b, hp->hd[HTTP_HDR_REASON].b,
		    (size_t)(hp->hd[HTTP_HDR_REASON].e - hp->hd[HTTP_HDR_REASON].b));
	omv_put(&b, "\n", 1);
	for (unsigned u = HTTP_HDR_FIRST; u < hp->nhd; u++) {
		const txt *h = &hp->hd[u];
		size_t l;

		if (h->b == NULL || h->e <= h->b)
			continue;
		l = (size_t)(h->e - h->b);
		if (http_IsFiltered(hp, u, HTTPH_A_INS) || omv_header_dropped(h->b, l))
			continue;
		if (memchr(h->b, '\n', l) != NULL || memchr(h->b, '\r', l) != NULL) {
			free(b.p);
			return (-2);
		}
		omv_put(&b, h->b, l);
		omv_put(&b, "\n", 1);
	}
	if (b.overflow) {
		free(b.p);
		return (-3);
	}
	*out = b.p;
	*len = b.len;
	return (0);
}

/* The hash of the backend request's values of the varied headers, as
 * Varnish itself matches variants (the first field of each name): a
 * variant's key when it is written and when it is looked up. */
void
omv_vary_hash(const struct http *bereq, const char *names, size_t len, uint8_t out[VSHA256_LEN])
{
	VSHA256_CTX sha;
	size_t off = 0;

	VSHA256_Init(&sha);
	while (off < len) {
		const char *nl = memchr(names + off, '\n', len - off);
		size_t k = (size_t)(nl - (names + off));
		char hdr[260];
		const char *v;

		assert(k > 0 && k < 256);
		hdr[0] = (char)(k + 1);
		memcpy(hdr + 1, names + off, k);
		hdr[k + 1] = ':';
		hdr[k + 2] = '\0';
		VSHA256_Update(&sha, names + off, k);
		if (http_GetHdr(bereq, hdr, &v)) {
			VSHA256_Update(&sha, ":", 1);
			VSHA256_Update(&sha, v, strlen(v));
		} else {
			VSHA256_Update(&sha, "\001", 1); /* absent differs from empty */
		}
		VSHA256_Update(&sha, "\n", 1);
		off += k + 1;
	}
	VSHA256_Final(out, &sha);
}

/* Where the object goes: the base key, or a variant under a marker that
 * names the response's Vary headers (written first if the one found at
 * lookup is missing or names others). 0, or a reason not to write. */
static const char *
target(VRT_CTX, struct omv_task *t, const struct busyobj *bo)
{
	omv_cache_t *c = t->c;
	char names[sizeof(t->vnames)];
	const char *vary;
	uint8_t vh[VSHA256_LEN];
	long n;

	if (!http_GetHdr(bo->beresp, H_Vary, &vary) ||
	    (n = omv_vary_names(vary, names, sizeof(names))) == 0) {
		bprintf(t->uri, "%s", t->key);
		return (NULL);
	}
	if (n < 0)
		return ("Vary that names no header, or too many");
	if (!t->has_marker || t->vnames_len != n || memcmp(t->vnames, names, (size_t)n) != 0) {
		char m[sizeof(names) + sizeof(OMV_META_TAG) + 4];
		om_put_opts_t opts = { 0 };
		om_info_t info;
		int rc;

		snprintf(m, sizeof(m), OMV_META_TAG "%c\n%.*s", OMV_KIND_VARY, (int)n, names);
		opts.meta = m;
		opts.meta_len = (uint32_t)strlen(m);
		rc = om_client_put(t->h, t->key, "", 0, &opts, &info);
		if (rc != 0) {
			omv_fail(ctx->vsl, c, rc, t->h, "writing the Vary marker", t->key);
			return ("");
		}
		t->has_marker = 1;
		t->marker_id = info.id;
		memcpy(t->vnames, names, (size_t)n);
		t->vnames_len = n;
		VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: Vary marker %s (version %ju)", t->key,
		    (uintmax_t)info.id);
	}
	omv_vary_hash(bo->bereq, t->vnames, (size_t)t->vnames_len, vh);
	omv_key_variant(t->uri, sizeof(t->uri), t->key, t->marker_id, vh);
	return (NULL);
}

static int
spool_open(const char *dir)
{
	char path[1024];
	int fd;

	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return (fd);
	/* A filesystem without O_TMPFILE: a name, unlinked at once. */
	if (snprintf(path, sizeof(path), "%s/objmapper-spool.XXXXXX", dir) >= (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		return (-1);
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		(void)unlink(path);
	return (fd);
}

static void
wt_skip(VRT_CTX, struct omv_task *t, const char *why)
{
	if (*why != '\0') {
		OMV_COUNT(t->c, skipped);
		VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: not written: %s", why);
	}
	t->wt = OMV_WT_NONE;
	omv_pool_put(t->c, &t->h);
}

static enum vfp_status v_matchproto_(vfp_init_f)
write_init(VRT_CTX, struct vfp_ctx *vc, struct vfp_entry *vfe)
{
	struct omv_task *t;
	struct busyobj *bo;
	omv_cache_t *c;
	const struct objcore *oc;
	char why[80];
	const char *r;
	ssize_t cl;
	uint64_t max_object;
	uint32_t max_meta;
	double end;
	om_put_opts_t opts = { 0 };
	int rc;

	CHECK_OBJ_NOTNULL(ctx, VRT_CTX_MAGIC);
	CHECK_OBJ_NOTNULL(vc, VFP_CTX_MAGIC);
	CAST_OBJ_NOTNULL(t, vfe->priv1, OMV_TASK_MAGIC);
	bo = ctx->bo;
	CHECK_OBJ_NOTNULL(bo, BUSYOBJ_MAGIC);
	CHECK_OBJ_NOTNULL(bo->htc, HTTP_CONN_MAGIC);
	oc = bo->fetch_objcore;
	c = t->c;
	if (t->wt != OMV_WT_PENDING || t->h == NULL)
		return (VFP_NULL);
	if ((r = refusal(bo, why, sizeof(why))) != NULL) {
		wt_skip(ctx, t, r);
		return (VFP_NULL);
	}
	cl = bo->htc->body_status == BS_NONE ? 0 : bo->htc->content_length;
	/* The limits of the daemon this connection found at its lookup (its
	 * HELLO): the first write-through after a start knows them too. */
	max_object = om_client_caps(t->h)->max_object;
	max_meta = om_client_caps(t->h)->max_meta;
	if (cl >= 0 && c->max_size > 0 && (uint64_t)cl > c->max_size) {
		snprintf(why, sizeof(why), "%zd bytes, over max_size", cl);
		wt_skip(ctx, t, why);
		return (VFP_NULL);
	}
	if (cl >= 0 && max_object > 0 && (uint64_t)cl > max_object) {
		snprintf(why, sizeof(why), "%zd bytes, over objmapperd's largest object", cl);
		wt_skip(ctx, t, why);
		return (VFP_NULL);
	}
	if (cl < 0 && *c->spool == '\0') {
		wt_skip(ctx, t, "a body of unknown length (no spool)");
		return (VFP_NULL);
	}
	end = oc->t_origin + oc->ttl + oc->grace + oc->keep;
	t->expires = (int64_t)ceil(end);
	if (end <= VTIM_real() + 1) {
		wt_skip(ctx, t, "it expires within a second");
		return (VFP_NULL);
	}
	switch (build_meta(bo, &t->wmeta, &t->wmeta_len, max_meta)) {
	case 0:
		break;
	case -1:
		wt_skip(ctx, t, "out of memory");
		return (VFP_NULL);
	case -2:
		wt_skip(ctx, t, "a header with a line break");
		return (VFP_NULL);
	default:
		snprintf(why, sizeof(why), "headers over objmapperd's %u bytes of metadata",
		    max_meta);
		wt_skip(ctx, t, why);
		return (VFP_NULL);
	}
	if ((r = target(ctx, t, bo)) != NULL) {
		wt_skip(ctx, t, r);
		return (VFP_NULL);
	}
	opts.meta = t->wmeta;
	opts.meta_len = (uint32_t)t->wmeta_len;
	opts.expires = t->expires;
	t->t_start = VTIM_real();
	if (cl == 0) {
		t->wt = OMV_WT_EMPTY;
	} else if (cl > 0) {
		rc = om_client_put_begin(t->h, t->uri, (uint64_t)cl, &opts);
		if (rc != 0) {
			omv_fail(ctx->vsl, c, rc, t->h, "write-through", t->uri);
			wt_skip(ctx, t, "");
			return (VFP_NULL);
		}
		t->wt = OMV_WT_STREAM;
		t->wlen = (uint64_t)cl;
	} else {
		t->spool_fd = spool_open(c->spool);
		if (t->spool_fd < 0) {
			OMV_COUNT(c, errors);
			OMV_COUNT(c, err_other);
			VSLb(ctx->vsl, SLT_Error, "objmapper: spool in %s: %s", c->spool,
			    strerror(errno));
			wt_skip(ctx, t, "");
			return (VFP_NULL);
		}
		t->wt = OMV_WT_SPOOL;
	}
	VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: writing %s (%s, expires in %.0f s)", t->uri,
	    t->wt == OMV_WT_SPOOL ? "length unknown, spooled" : t->wt == OMV_WT_EMPTY ?
	    "no body" : "streamed", end - VTIM_real());
	return (VFP_OK);
}

/* Gives up a write-through: nothing of it is published. */
static void
wt_drop(struct omv_task *t)
{
	if (t->wt == OMV_WT_STREAM)
		om_client_put_abort(t->h);
	if (t->spool_fd >= 0) {
		closefd(&t->spool_fd);
	}
	t->wt = OMV_WT_FAILED;
}

static int
write_all(int fd, const void *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return (-1);
		p = (const char *)p + w;
		n -= (size_t)w;
	}
	return (0);
}

static enum vfp_status v_matchproto_(vfp_pull_f)
write_pull(struct vfp_ctx *vc, struct vfp_entry *vfe, void *p, ssize_t *lp)
{
	struct omv_task *t;
	enum vfp_status vp;
	size_t n;
	int rc;

	CHECK_OBJ_NOTNULL(vc, VFP_CTX_MAGIC);
	CAST_OBJ_NOTNULL(t, vfe->priv1, OMV_TASK_MAGIC);
	vp = VFP_Suck(vc, p, lp);
	if (vp == VFP_ERROR || t->wt == OMV_WT_FAILED || t->wt == OMV_WT_NONE)
		return (vp);
	n = *lp > 0 ? (size_t)*lp : 0;
	if (t->wt == OMV_WT_STREAM && n > 0) {
		/* The last byte waits for the end of the fetch: the daemon
		 * publishes when it has every byte, and the fetch may still
		 * fail above us (a filter, storage). */
		if (t->wdone + n > t->wlen) {
			VSLb(vc->wrk->vsl, SLT_Error, "objmapper: %s: the origin sent more than its "
			    "Content-Length", t->uri);
			wt_drop(t);
			return (vp);
		}
		if (t->wdone + n == t->wlen) {
			t->last = ((const unsigned char *)p)[n - 1];
			t->held = 1;
			n--;
		}
		rc = om_client_put_write(t->h, p, n);
		if (rc != 0) {
			omv_fail(vc->wrk->vsl, t->c, rc, t->h, "write-through", t->uri);
			wt_drop(t);
			OMV_COUNT(t->c, aborted);
			return (vp);
		}
		t->wdone += n + (t->held ? 1 : 0);
	} else if (t->wt == OMV_WT_SPOOL && n > 0) {
		/* A body of unknown length is held to the limits of one of known
		 * length as it comes: nothing past them is spooled. */
		uint64_t max_object = om_client_caps(t->h)->max_object;

		if (t->c->max_size > 0 && t->wdone + n > t->c->max_size) {
			VSLb(vc->wrk->vsl, SLT_VCL_Log, "objmapper: not written: over max_size");
			OMV_COUNT(t->c, skipped);
			wt_drop(t);
			return (vp);
		}
		if (max_object > 0 && t->wdone + n > max_object) {
			VSLb(vc->wrk->vsl, SLT_VCL_Log, "objmapper: not written: over objmapperd's "
			    "largest object (%ju bytes)", (uintmax_t)max_object);
			OMV_COUNT(t->c, skipped);
			wt_drop(t);
			return (vp);
		}
		if (write_all(t->spool_fd, p, n) != 0) {
			OMV_COUNT(t->c, errors);
			OMV_COUNT(t->c, err_other);
			VSLb(vc->wrk->vsl, SLT_Error, "objmapper: spool in %s: %s", t->c->spool,
			    strerror(errno));
			wt_drop(t);
			OMV_COUNT(t->c, aborted);
			return (vp);
		}
		t->wdone += n;
	}
	if (vp == VFP_END)
		t->end_seen = 1;
	return (vp);
}

/* Publishes what was written, if the fetch completed. */
static void v_matchproto_(vfp_fini_f)
write_fini(struct vfp_ctx *vc, struct vfp_entry *vfe)
{
	struct omv_task *t;
	struct vsl_log *vsl;
	om_put_opts_t opts = { 0 };
	om_info_t info;
	int rc = 0;

	CHECK_OBJ_NOTNULL(vc, VFP_CTX_MAGIC);
	CAST_OBJ_NOTNULL(t, vfe->priv1, OMV_TASK_MAGIC);
	vsl = vc->wrk->vsl;
	switch (t->wt) {
	case OMV_WT_STREAM:
	case OMV_WT_SPOOL:
	case OMV_WT_EMPTY:
		break;
	case OMV_WT_PENDING:
		/* Never opened (a 304 merged with Varnish's copy, a retry). */
		t->wt = OMV_WT_NONE;
		omv_pool_put(t->c, &t->h);
		return;
	default:
		omv_pool_put(t->c, &t->h);
		return;
	}
	if (vc->failed || (t->wt != OMV_WT_EMPTY && !t->end_seen) ||
	    (t->wt == OMV_WT_STREAM && (t->wdone != t->wlen || !t->held))) {
		VSLb(vsl, SLT_VCL_Log, "objmapper: not published %s: the fetch %s", t->uri,
		    vc->failed ? "failed" : "did not complete");
		wt_drop(t);
		OMV_COUNT(t->c, aborted);
		omv_pool_put(t->c, &t->h);
		return;
	}
	opts.meta = t->wmeta;
	opts.meta_len = (uint32_t)t->wmeta_len;
	opts.expires = t->expires;
	if (t->wt == OMV_WT_STREAM) {
		rc = om_client_put_write(t->h, &t->last, 1);
		t->held = 0;
		if (rc == 0)
			rc = om_client_put_end(t->h, &info);
	} else if (t->wt == OMV_WT_SPOOL) {
		rc = om_client_put_fd(t->h, t->uri, t->spool_fd, t->wdone, &opts, &info);
		closefd(&t->spool_fd);
	} else {
		rc = om_client_put(t->h, t->uri, "", 0, &opts, &info);
	}
	if (rc != 0) {
		omv_fail(vsl, t->c, rc, t->h, "write-through", t->uri);
		if (t->wt == OMV_WT_STREAM)
			om_client_put_abort(t->h);
		t->wt = OMV_WT_FAILED;
		OMV_COUNT(t->c, aborted);
	} else {
		OMV_COUNT(t->c, writes);
		omv_count(t->c, &t->c->vsc->write_bytes, info.size);
		VSLb(vsl, SLT_VCL_Log, "objmapper: written %s: %ju bytes, version %ju, %.3f s",
		    t->uri, (uintmax_t)info.size, (uintmax_t)info.id, VTIM_real() - t->t_start);
		t->wt = OMV_WT_NONE;
	}
	omv_pool_put(t->c, &t->h);
}

const struct vfp omv_vfp_write = {
	.name = "objmapper_write",
	.init = write_init,
	.pull = write_pull,
	.fini = write_fini,
};

void
omv_task_release(struct omv_task *t)
{
	CHECK_OBJ_NOTNULL(t, OMV_TASK_MAGIC);
	if (t->wt == OMV_WT_STREAM || t->wt == OMV_WT_SPOOL)
		wt_drop(t);
	if (t->spool_fd >= 0)
		closefd(&t->spool_fd);
	omv_pool_put(t->c, &t->h);
	if (t->have_obj) {
		om_object_free(&t->obj);
		t->have_obj = 0;
	}
	free(t->wmeta);
	t->wmeta = NULL;
	t->wt = OMV_WT_NONE;
}
