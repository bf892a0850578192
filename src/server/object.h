/*
 * Objects as both protocols serve them (object.c): the one GET, through
 * the worker's descriptor cache; a failed PUT in words; a URI shown in a
 * message. Worker processes only.
 */
#ifndef OM_OBJECT_H
#define OM_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/fdcache.h"
#include "store/om_store.h"

/* What a GET wants of the object. */
typedef struct {
	unsigned sflags;       /* OM_GET_NOTOUCH */
	bool meta;             /* its metadata and mtime too */
	/* The descriptor leaves the worker for a client that may read(2) it,
	 * so it must be a new open file description, never the cache's:
	 * always, or for objects over private_over bytes (UINT64_MAX: never). */
	bool private_all;
	uint64_t private_over;
} om_obj_want_t;

/* An object a GET found. */
typedef struct {
	om_fdref_t ref;      /* its file, held until om_obj_put (or taken) */
	int tier;            /* enum om_tier_id the descriptor points into */
	om_ix_obj_t obj;
	uint32_t meta_len;   /* with want.meta: the metadata's length (in the caller's buffer) */
	int64_t mtime;       /* ... and the mtime of its record */
	bool bad_record;     /* after a failure: its record could not be read (else: the file not opened) */
	bool packed;         /* ref is the object's pack, its bytes from base on: never passed to a
	                      * client (om_obj_private gives one its own descriptor) */
	uint64_t base;
} om_obj_t;

/*
 * Looks uri up (counting the read unless OM_GET_NOTOUCH), opens its file
 * or takes the cache's descriptor of it, and with want->meta reads its
 * metadata into meta (cap bytes; kept in the cache's entry once read).
 * 0 with *o holding a reference, or -errno (-ENOENT: no such object)
 * with nothing held, and o->bad_record if the object's record failed.
 */
int om_obj_get(om_fdc_t *fdc, om_store_t *st, const void *uri, size_t len, const om_obj_want_t *want,
    om_obj_t *o, uint8_t *meta, size_t cap);
/*
 * Bytes [off, off + len) of o's object (within it, len at most
 * OM_FDC_MAP_MAX for a mapping) into buf: copied from the cache entry's
 * mapping where the entry is hot enough to have one (no system call),
 * else with pread. len, or fewer (a short read), or -errno; a mapped file
 * cut short behind the daemon's back reads short (the copy's SIGBUS is
 * caught) and its mapping is given up.
 */
ssize_t om_obj_read(om_fdc_t *fdc, const om_obj_t *o, uint64_t off, void *buf, size_t len);
/* For a client that gets a descriptor of a packed object: its own (a
 * sealed memfd of the bytes, from the worker's mapping of the pack where
 * it has one) replaces the pack's in o. 0 or -errno. */
int om_obj_private(om_fdc_t *fdc, om_store_t *st, om_obj_t *o);
/* Releases what om_obj_get holds. */
void om_obj_put(om_obj_t *o);
/*
 * A PUT into tier that failed with rc: its objmapper status, and in why
 * what the client is told. No object is missing in a PUT, so ENOENT is the
 * server's failure (INTERNAL), as is any errno the table does not have:
 * such a message says if the tier's directory was deleted (every PUT there
 * fails, with errors that say nothing of it), and is logged.
 */
uint16_t om_obj_put_error(om_store_t *st, int rc, int tier, char *why, size_t n);
/* A URI for messages: printable, cut short. Returns buf. */
const char *om_obj_uri_shown(const void *uri, size_t len, char *buf, size_t n);

#endif
