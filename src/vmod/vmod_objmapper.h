/*
 * vmod_objmapper's private types, shared by the director
 * (vmod_objmapper.c), the fetch processors (vmod_vfp.c) and the pool of
 * connections (vmod_pool.c).
 */
#ifndef OMV_H
#define OMV_H

#include <pthread.h>
#include <stdint.h>

#include <objmapper/objmapper.h>

#include "vmod_meta.h"

struct VSC_objmapper;
struct vsc_seg;

/* One objmapper.cache object of a VCL. */
struct VPFX(objmapper_cache) {
	unsigned magic;
#define OMV_CACHE_MAGIC 0x6f6d7663
	char *name;              /* its name in the VCL */
	VCL_BACKEND dir;         /* the director that VCL fetches from */
	VCL_BACKEND origin;
	char *socket;
	int timeout_ms;
	double backoff;
	char *prefix;
	uint64_t max_size;       /* 0: objmapperd's limits only */
	char *spool;             /* "" : bodies of unknown length are not written */
	struct VSC_objmapper *vsc;
	struct vsc_seg *vsc_seg;

	/* The pool of connections (libobjmapper handles: one thread each). */
	pthread_mutex_t mtx;
	om_client_t **idle;
	unsigned nidle, nconns, max_conns;
	double down_until;       /* VTIM_real: objmapperd is left alone until then */
};
typedef struct VPFX(objmapper_cache) omv_cache_t;

/* Write-through states */
enum omv_wt {
	OMV_WT_NONE = 0,   /* nothing to write (or done) */
	OMV_WT_PENDING,    /* the processor is pushed, its init decides */
	OMV_WT_STREAM,     /* a streamed PUT of known length is open */
	OMV_WT_SPOOL,      /* the body goes to a spool file */
	OMV_WT_EMPTY,      /* no body: the PUT goes at the end */
	OMV_WT_FAILED,     /* given up; nothing is published */
};

/* One fetch's state, a task priv of the backend transaction. */
struct omv_task {
	unsigned magic;
#define OMV_TASK_MAGIC 0x6f6d7674
	omv_cache_t *c;
	om_client_t *h;           /* the pooled connection this fetch holds */
	VCL_BACKEND be;           /* the origin backend whose headers we took */
	int origin_open;          /* be's finish is owed */
	char key[OMV_KEY_MAX];    /* base key */
	/* The Vary marker found at the base key, if any. */
	int has_marker;
	uint64_t marker_id;
	char vnames[512];
	long vnames_len;
	/* An object read from objmapperd: a hit, or a stale copy kept in case
	 * the origin fails. */
	om_object_t obj;
	int have_obj;
	omv_meta_t meta;
	uint64_t off;
	/* Write-through */
	enum omv_wt wt;
	char uri[OMV_KEY_MAX];
	char *wmeta;              /* malloc'd */
	size_t wmeta_len;
	int64_t expires;
	uint64_t wlen, wdone;     /* announced (streamed) and sent or spooled */
	unsigned char last;       /* the final byte of a stream, held back */
	int held;
	int end_seen;             /* the origin's body ended */
	int spool_fd;
	double t_start;
};

/* vmod_pool.c */
om_client_t *omv_pool_get(VRT_CTX, omv_cache_t *c, const char *why);
void omv_pool_put(omv_cache_t *c, om_client_t **hp);
/* Counts and logs a failure of a call to objmapperd (rc < 0) and, for the
 * failures that mean objmapperd is down or slow, starts the backoff. */
void omv_fail(struct vsl_log *vsl, omv_cache_t *c, int rc, om_client_t *h, const char *what,
    const char *uri);
void omv_count(omv_cache_t *c, uint64_t *counter, uint64_t n);
#define OMV_COUNT(c, name) omv_count((c), &(c)->vsc->name, 1)

/* vmod_vfp.c */
extern const struct vfp omv_vfp_body;   /* source: the object's bytes */
extern const struct vfp omv_vfp_write;  /* write-through, above the origin's */
void omv_task_release(struct omv_task *t);
/* SHA-256 of the backend request's values of the varied header names
 * ("a\nb\n"): what tells a Vary object's variants apart. */
void omv_vary_hash(const struct http *bereq, const char *names, size_t len, uint8_t out[32]);

#endif
