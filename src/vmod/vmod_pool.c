/*
 * vmod_objmapper's pool of libobjmapper connections to objmapperd, and the
 * counting and logging of a call that failed (with the backoff that sends
 * fetches to the origin while objmapperd is down): what the director
 * (vmod_objmapper.c) and the fetch processors (vmod_vfp.c) share. Runs in
 * varnishd's worker threads.
 */
#include <stdlib.h>

#include "cache/cache_varnishd.h"
#include "vtim.h"

#include "vcc_objmapper_if.h"
#include "VSC_objmapper.h"
#include "vmod_objmapper.h"

/* ---- counters and failures ---------------------------------------------- */

void
omv_count(omv_cache_t *c, uint64_t *counter, uint64_t n)
{
	(void)c;
	(void)__atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

void
omv_fail(struct vsl_log *vsl, omv_cache_t *c, int rc, om_client_t *h, const char *what,
    const char *uri)
{
	const char *kind;
	int down = 0;

	switch (-rc) {
	case OM_ECONNECT:
		kind = "cannot connect";
		OMV_COUNT(c, err_down);
		down = 1;
		break;
	case OM_ETIMEDOUT:
		kind = "timeout";
		OMV_COUNT(c, err_timeout);
		down = 1;
		break;
	case OM_EIO:
	case OM_EPROTO:
		kind = "connection failed";
		OMV_COUNT(c, err_conn);
		down = 1;
		break;
	case OM_STATUS_NO_SPACE:
	case OM_STATUS_TOO_LARGE:
	case OM_STATUS_META_TOO_LARGE:
		kind = "no room";
		OMV_COUNT(c, err_full);
		break;
	default:
		kind = "refused";
		OMV_COUNT(c, err_other);
		break;
	}
	OMV_COUNT(c, errors);
	if (down) {
		AZ(pthread_mutex_lock(&c->mtx));
		c->down_until = VTIM_real() + c->backoff;
		AZ(pthread_mutex_unlock(&c->mtx));
	}
	if (vsl != NULL)
		VSLb(vsl, SLT_Error, "objmapper: %s%s%s: %s: %s%s", what, uri ? " " : "",
		    uri ? uri : "", kind, h != NULL ? om_client_message(h) : om_client_strerror(rc),
		    down ? "; going to the origin until objmapperd answers again" : "");
}

/* ---- the pool of connections -------------------------------------------- */

/*
 * A connection for one fetch, or NULL (then the fetch goes to the origin):
 * objmapperd failed within the backoff, every connection is in use, or a
 * new one cannot be made. Handles connect lazily, so that their timeout
 * also bounds connecting.
 */
om_client_t *
omv_pool_get(VRT_CTX, omv_cache_t *c, const char *why)
{
	om_client_t *h = NULL;
	double now = VTIM_real(), until;
	unsigned busy = 0;
	int rc;

	AZ(pthread_mutex_lock(&c->mtx));
	until = c->down_until;
	if (now < until) {
		AZ(pthread_mutex_unlock(&c->mtx));
		OMV_COUNT(c, bypassed);
		VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: %s: objmapperd failed %.3f s ago, "
		    "left alone for %.3f s more", why, c->backoff - (until - now), until - now);
		return (NULL);
	}
	if (c->nidle > 0)
		h = c->idle[--c->nidle];
	else if (c->nconns < c->max_conns)
		c->nconns++;
	else
		busy = 1;
	AZ(pthread_mutex_unlock(&c->mtx));
	if (busy) {
		OMV_COUNT(c, bypassed);
		VSLb(ctx->vsl, SLT_VCL_Log, "objmapper: %s: all %u connections in use", why,
		    c->max_conns);
		return (NULL);
	}
	if (h != NULL)
		return (h);
	rc = om_client_connect(c->socket, OM_CLIENT_OFFSET_READS | OM_CLIENT_LAZY, &h);
	if (rc != 0) {
		omv_fail(ctx->vsl, c, rc, h, "connect", c->socket);
		om_client_close(h);
		AZ(pthread_mutex_lock(&c->mtx));
		c->nconns--;
		AZ(pthread_mutex_unlock(&c->mtx));
		return (NULL);
	}
	om_client_set_timeout(h, c->timeout_ms);
	omv_count(c, &c->vsc->conns, 1);
	return (h);
}

/* Back into the pool; *hp is cleared. A handle whose connection broke
 * reconnects at its next call. */
void
omv_pool_put(omv_cache_t *c, om_client_t **hp)
{
	om_client_t *h = *hp;

	if (h == NULL)
		return;
	*hp = NULL;
	om_client_put_abort(h);
	AZ(pthread_mutex_lock(&c->mtx));
	assert(c->nidle < c->max_conns);
	c->idle[c->nidle++] = h;
	AZ(pthread_mutex_unlock(&c->mtx));
}
