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
#include <sys/prctl.h>
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

#define BATCH_MAX 64

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

/* Checks one GET's outcome: the object is one whole version of its key. */
static void
check_get(om_client_t *c, slot_t *s, unsigned key, int rc, om_object_t *o, unsigned char *buf,
    unsigned char *want)
{
	unsigned k = 0, v = 0;
	const unsigned char *bytes = NULL;
	char uri[64], meta[64] = "";

	snprintf(uri, sizeof(uri), "/load/%u", key);
	if (rc != 0) {
		char m[200];

		s->failures++;
		snprintf(m, sizeof(m), "%d %s: %s", rc, om_client_strerror(rc), om_client_message(c));
		note(s, "GET %s: %s", uri, m);
		return;
	}
	if (o->meta_len < sizeof(meta))
		memcpy(meta, o->meta, o->meta_len);
	if (sscanf(meta, "key=%u version=%u", &k, &v) != 2 || k != key || o->len != om_load_size(key)) {
		s->wrong++;
		note(s, "GET %s: metadata \"%s\"", uri, meta);
	} else {
		if (o->fd >= 0) {
			if (pread(o->fd, buf, o->len, 0) == (ssize_t)o->len)
				bytes = buf;
		} else {
			bytes = o->data;
		}
		om_load_fill(want, key, v);
		if (bytes == NULL || memcmp(bytes, want, o->len) != 0) {
			s->wrong++;
			note(s, "GET %s: bytes are not version %s", uri, meta);
		}
	}
	om_object_free(o);
}

/* One om_client_get_batch of `batch` random keys (repeats allowed),
 * each answer checked as a single GET's is. */
static void
get_batch(om_client_t *c, slot_t *s, uint64_t *rnd, unsigned nkeys, unsigned batch,
    unsigned char *buf, unsigned char *want)
{
	char names[BATCH_MAX][32];
	const char *uris[BATCH_MAX] = { 0 };
	unsigned keys[BATCH_MAX];
	om_object_t objs[BATCH_MAX];
	int rcs[BATCH_MAX];
	int rc;

	for (unsigned i = 0; i < batch; i++) {
		keys[i] = (unsigned)(om_test_rand(rnd) % nkeys);
		snprintf(names[i], sizeof(names[i]), "/load/%u", keys[i]);
		uris[i] = names[i];
	}
	rc = om_client_get_batch(c, batch, uris, OM_MODE_AUTO, OM_GET_WANT_META, objs, rcs);
	if (rc != 0) {
		char m[200];

		snprintf(m, sizeof(m), "%d %s: %s", rc, om_client_strerror(rc), om_client_message(c));
		note(s, "GET batch: %s%s", m, "");
	}
	for (unsigned i = 0; i < batch; i++) {
		check_get(c, s, keys[i], rcs[i], &objs[i], buf, want);
		s->gets++;
	}
}

static void
client_main(shared_t *sh, unsigned id, const char *sock, unsigned nkeys, unsigned put_pct,
    unsigned batch)
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
		} else if (batch > 0) {
			get_batch(c, s, &rnd, nkeys, batch, buf, want);
		} else {
			om_object_t o;
			int rc = om_client_get(c, uri, OM_MODE_AUTO, OM_GET_WANT_META, &o);

			check_get(c, s, key, rc, &o, buf, want);
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
	return om_load_start_batch(sock, nclients, nkeys, put_pct, 0);
}

om_load_t *
om_load_start_batch(const char *sock, unsigned nclients, unsigned nkeys, unsigned put_pct,
    unsigned batch)
{
	om_load_t *l = calloc(1, sizeof(*l));

	assert_true(nclients <= MAX_CLIENTS && batch <= BATCH_MAX);
	l->sh = mmap(NULL, sizeof(shared_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(l->sh != MAP_FAILED);
	l->n = nclients;
	for (unsigned i = 0; i < nclients; i++) {
		l->pids[i] = fork();
		assert_true(l->pids[i] >= 0);
		if (l->pids[i] == 0)
			client_main(l->sh, i, sock, nkeys, put_pct, batch);
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

void
om_load_burn(pid_t *pids, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			volatile uint64_t x = 0;

			/* Dies with the test, whatever becomes of it. */
			(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (;;)
				x++;
		}
	}
}

void
om_load_unburn(const pid_t *pids, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		kill(pids[i], SIGKILL);
		om_test_wait(pids[i]);
	}
}
