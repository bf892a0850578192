/*
 * Test load (see om_load.h): forked client processes sharing their
 * counters through an anonymous shared mapping.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_load.h"
#include "om_test.h"

#define MAX_CLIENTS 32

typedef struct {
	uint64_t ops, gets, puts, failures, wrong, retries;
	char why[512];
} slot_t;

typedef struct {
	uint32_t stop;
	slot_t slot[MAX_CLIENTS];
} shared_t;

struct om_load {
	shared_t *sh;
	pid_t pids[MAX_CLIENTS];
	unsigned n;
};

size_t
om_load_size(unsigned key)
{
	return key % 2 ? 6000 : 150000;
}

void
om_load_fill(void *buf, unsigned key, uint32_t version)
{
	om_test_fill(buf, om_load_size(key), (uint64_t)key << 32 | version);
}

static int
put_version(om_client_t *c, unsigned key, uint32_t version, void *buf)
{
	char uri[64], meta[64];
	om_put_opts_t po = { .meta = meta };

	snprintf(uri, sizeof(uri), "/load/%u", key);
	snprintf(meta, sizeof(meta), "key=%u version=%u", key, version);
	po.meta_len = (uint32_t)strlen(meta);
	om_load_fill(buf, key, version);
	return om_client_put(c, uri, buf, om_load_size(key), &po, NULL);
}

int
om_load_preload(const char *sock, unsigned nkeys)
{
	om_client_t *c = NULL;
	void *buf = malloc(om_load_size(0));
	int rc = om_client_connect(sock, 0, &c);

	for (unsigned k = 0; rc == 0 && k < nkeys; k++)
		rc = put_version(c, k, 0, buf);
	om_client_close(c);
	free(buf);
	return rc;
}

static void
note(slot_t *s, const char *fmt, const char *a, const char *b)
{
	if (s->why[0] == '\0')
		snprintf(s->why, sizeof(s->why), fmt, a, b);
}

static void
client_main(shared_t *sh, unsigned id, const char *sock, unsigned nkeys, unsigned put_pct)
{
	slot_t *s = &sh->slot[id];
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (id + 1) ^ (uint64_t)getpid();
	unsigned char *buf = malloc(om_load_size(0)), *want = malloc(om_load_size(0));
	uint32_t version = (id + 1) << 24;
	om_client_t *c = NULL;

	if (om_client_connect(sock, 0, &c) != 0) {
		note(s, "connect: %s%s", om_client_message(c), "");
		s->failures++;
		_exit(1);
	}
	while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
		unsigned key = (unsigned)(om_test_rand(&rnd) % nkeys);
		char uri[64];

		snprintf(uri, sizeof(uri), "/load/%u", key);
		if (om_test_rand(&rnd) % 100 < put_pct) {
			int rc = put_version(c, key, ++version, buf);

			if (rc != 0) {
				char m[200];

				s->failures++;
				snprintf(m, sizeof(m), "%d %s: %s", rc, om_client_strerror(rc), om_client_message(c));
				note(s, "PUT %s: %s", uri, m);
			}
			s->puts++;
		} else {
			om_object_t o;
			unsigned k = 0, v = 0;
			const unsigned char *bytes = NULL;

			int rc = om_client_get(c, uri, OM_MODE_AUTO, OM_GET_WANT_META, &o);

			if (rc != 0) {
				char m[200];

				s->failures++;
				snprintf(m, sizeof(m), "%d %s: %s", rc, om_client_strerror(rc), om_client_message(c));
				note(s, "GET %s: %s", uri, m);
			} else {
				char meta[64] = "";

				if (o.meta_len < sizeof(meta))
					memcpy(meta, o.meta, o.meta_len);
				if (sscanf(meta, "key=%u version=%u", &k, &v) != 2 || k != key ||
				    o.len != om_load_size(key)) {
					s->wrong++;
					note(s, "GET %s: metadata \"%s\"", uri, meta);
				} else {
					if (o.fd >= 0) {
						if (pread(o.fd, buf, o.len, 0) == (ssize_t)o.len)
							bytes = buf;
					} else {
						bytes = o.data;
					}
					om_load_fill(want, key, v);
					if (bytes == NULL || memcmp(bytes, want, o.len) != 0) {
						s->wrong++;
						note(s, "GET %s: bytes are not version %s", uri, meta);
					}
				}
				om_object_free(&o);
			}
			s->gets++;
		}
		s->ops++;
		s->retries = om_client_retries(c);
	}
	om_client_close(c);
	_exit(0);
}

om_load_t *
om_load_start(const char *sock, unsigned nclients, unsigned nkeys, unsigned put_pct)
{
	om_load_t *l = calloc(1, sizeof(*l));

	assert_true(nclients <= MAX_CLIENTS);
	l->sh = mmap(NULL, sizeof(shared_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(l->sh != MAP_FAILED);
	l->n = nclients;
	for (unsigned i = 0; i < nclients; i++) {
		l->pids[i] = fork();
		assert_true(l->pids[i] >= 0);
		if (l->pids[i] == 0)
			client_main(l->sh, i, sock, nkeys, put_pct);
	}
	return l;
}

uint64_t
om_load_ops(const om_load_t *l)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < l->n; i++)
		n += __atomic_load_n(&l->sh->slot[i].ops, __ATOMIC_RELAXED);
	return n;
}

void
om_load_stop(om_load_t *l, om_load_result_t *res)
{
	memset(res, 0, sizeof(*res));
	__atomic_store_n(&l->sh->stop, 1, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < l->n; i++) {
		slot_t *s = &l->sh->slot[i];

		om_test_wait(l->pids[i]);
		res->ops += s->ops;
		res->gets += s->gets;
		res->puts += s->puts;
		res->failures += s->failures;
		res->wrong += s->wrong;
		res->retries_total += s->retries;
		if (s->retries > res->retries_max)
			res->retries_max = s->retries;
		if (res->why[0] == '\0' && s->why[0] != '\0')
			memcpy(res->why, s->why, sizeof(res->why));
	}
	munmap(l->sh, sizeof(shared_t));
	free(l);
}
