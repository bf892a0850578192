/*
 * Load for integration tests: client processes, one libobjmapper
 * connection each, running GET/PUT loops over preloaded keys and checking
 * every byte (each object's metadata names its key and version, and its
 * bytes derive from them).
 */
#ifndef OM_LOAD_H
#define OM_LOAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
	uint64_t ops;
	uint64_t gets;
	uint64_t puts;
	uint64_t failures;     /* requests that failed (after the library's retries) */
	uint64_t wrong;        /* GETs whose bytes were not one whole version */
	uint64_t retries_max;  /* the most any one client re-sent */
	uint64_t retries_total;
	char why[512];         /* the first failure */
} om_load_result_t;

typedef struct om_load om_load_t;

/* PUTs version 0 of every key; 0 or a negative libobjmapper code. */
int om_load_preload(const char *sock, unsigned nkeys);
om_load_t *om_load_start(const char *sock, unsigned nclients, unsigned nkeys, unsigned put_pct);
/* The same, with GETs as om_client_get_batch of `batch` keys (at most 64),
 * each answer checked; ops counts a batch once, gets each GET. */
om_load_t *om_load_start_batch(const char *sock, unsigned nclients, unsigned nkeys, unsigned put_pct,
    unsigned batch);
/* Operations done so far by all clients. */
uint64_t om_load_ops(const om_load_t *l);
void om_load_stop(om_load_t *l, om_load_result_t *res);
/* A loaded machine: n processes that spin on the CPU until om_load_unburn
 * (pids has room for n). */
void om_load_burn(pid_t *pids, unsigned n);
void om_load_unburn(const pid_t *pids, unsigned n);
/* The bytes of a key's version (sizes alternate 6000 and 150000 bytes,
 * below and above the inline threshold). */
size_t om_load_size(unsigned key);
void om_load_fill(void *buf, unsigned key, uint32_t version);

#endif
