/*
 * libobjmapper's reading of what the daemon sends (src/client/client.c):
 * response headers, messages, metadata, inline bodies, descriptors, HELLO
 * capabilities, GOAWAY, and the reconnect and retry rules around them.
 *
 * The client connects to "unix:/fuzz/objmapper.sock"; this program's
 * connect() (it takes the place of libc's for the library linked in) hands
 * it one end of a socketpair whose other end already holds the next
 * "server stream" of the input and is then shut for writing. usleep() (the
 * reconnect back-off) returns at once. Input:
 *
 *   u8 n, then n operation bytes (GET in each form, STAT, STATS, PING,
 *   DELETE, PUT, PUT of a descriptor, a pipelined batch, LIST in pages,
 *   PURGE in steps); then the streams,
 *   one per connection: u8 flags (bit 0: a descriptor comes with the first
 *   byte), u16 length, the bytes. A connection past the last stream is
 *   refused.
 *
 * Then the same streams go straight into the non-blocking decoder
 * (om_decoder_feed, in pieces whose sizes the stream's bytes choose, a
 * descriptor with the first piece of a stream whose flag asks for one),
 * and every response it yields is checked against its kind, and read as a
 * LIST page and as a PURGE step.
 *
 * Checks: no memory error, leak or undefined behaviour; results inside
 * their bounds (a buffer GET's length within the buffer, a descriptor
 * GET's descriptor valid, STATS text terminated, a decoded response's
 * body where its kind says, a listing's entries each a URI of uri_len
 * bytes that a URI may hold, NUL-terminated); no descriptor is left open
 * once the handle and the decoder are closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "fuzz.h"

#define SOCK_PATH "/fuzz/objmapper.sock"
#define MAX_STREAMS 8

/*
 * The library allocates the inline body a response announces and copes
 * when malloc fails; here malloc fails above 64 MB (the input's bytes would
 * never fill more), in libFuzzer runs and in check-asan's replay alike.
 * ASan reads this at start; other builds never call it.
 */
/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): ASan's hook */
__attribute__((visibility("default"))) const char *__asan_default_options(void);

const char *
__asan_default_options(void) /* NOLINT(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): ASan's hook */
{
	return "allocator_may_return_null=1:max_allocation_size_mb=64";
}

static fz_in_t streams;          /* what is left of the input's streams */
static int server_ends[MAX_STREAMS + 1];
static unsigned nserver;

int
usleep(useconds_t us)
{
	(void)us;
	return 0;
}

int
connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	const struct sockaddr_un *su = (const struct sockaddr_un *)(const void *)sa;
	uint8_t flags, data[65536];
	uint16_t n;
	int sv[2];

	FZ_ASSERT(len >= sizeof(sa_family_t) && sa->sa_family == AF_UNIX &&
	    strcmp(su->sun_path, SOCK_PATH) == 0, "connect to something else");
	if (streams.n < 3 || nserver == MAX_STREAMS) {
		errno = ECONNREFUSED;
		return -1;
	}
	flags = fz_u8(&streams);
	n = fz_u16(&streams);
	if (n > streams.n)
		n = (uint16_t)streams.n;
	memcpy(data, streams.p, n);
	streams.p += n;
	streams.n -= n;
	FZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
	FZ_ASSERT(dup3(sv[0], fd, O_CLOEXEC) == fd, "dup3");
	close(sv[0]);
	/* Room for the whole stream: it is written before the client reads. */
	FZ_ASSERT(setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &(int){ 1 << 20 }, sizeof(int)) == 0,
	    "SO_SNDBUF");
	if (n > 0) {
		struct iovec iov = { data, n };
		struct msghdr mh;
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} ctl;
		int mfd = -1;

		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		if (flags & 1) {
			struct cmsghdr *cm;

			mfd = memfd_create("fuzz_client", MFD_CLOEXEC);
			FZ_ASSERT(mfd >= 0 && write(mfd, "object bytes", 12) == 12, "memfd");
			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = sizeof(ctl.buf);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &mfd, sizeof(int));
		}
		FZ_ASSERT(sendmsg(sv[1], &mh, MSG_NOSIGNAL) == (ssize_t)n, "sendmsg: %s",
		    strerror(errno));
		if (mfd >= 0)
			close(mfd);
	}
	shutdown(sv[1], SHUT_WR);
	server_ends[nserver++] = sv[1];
	return 0;
}

static int
lowest_free_fd(void)
{
	int fd = dup(2);

	FZ_ASSERT(fd >= 0, "dup");
	close(fd);
	return fd;
}

/* A listing's entry as the library hands it over; stops the listing at
 * the entry *arg counts down to (if not NULL). */
static int
check_entry(void *arg, const om_entry_t *e)
{
	unsigned *left = arg;

	FZ_ASSERT(e->uri != NULL && e->uri_len >= 1 && e->uri_len <= OM_PROTO_URI_MAX &&
	    strlen(e->uri) == e->uri_len, "entry of %zu bytes", e->uri_len);
	for (size_t i = 0; i < e->uri_len; i++)
		FZ_ASSERT((unsigned char)e->uri[i] > 0x20 && (unsigned char)e->uri[i] != 0x7f,
		    "byte 0x%02x in an entry's URI", (unsigned char)e->uri[i]);
	FZ_ASSERT(e->copy == 0 || e->copy == 1, "copy %d", e->copy);
	if (left != NULL && --*left == 0)
		return 7;
	return 0;
}

static void
run_op(om_client_t *c, uint8_t op)
{
	static const char *const uris[] = { "/a", "/b/c", "/d" };
	const char *uri = uris[(op >> 6) % 3];
	int mode = (op >> 4) & 3, rc;
	om_info_t info;
	om_object_t obj, objs[3];

	switch (op % 12) {
	case 0: {
		char buf[256];
		size_t len = 9999;

		rc = om_client_get_buf(c, uri, mode, buf, sizeof(buf), &len, &info);
		if (rc == 0)
			FZ_ASSERT(len <= sizeof(buf), "%zu bytes in a buffer of %zu", len, sizeof(buf));
		break;
	}
	case 1:
		rc = om_client_get(c, uri, mode, (op & 8) ? OM_GET_WANT_META : 0, &obj);
		if (rc == 0)
			FZ_ASSERT(obj.fd >= 0 || obj.data != NULL || obj.len == 0, "a GET without bytes");
		om_object_free(&obj);
		break;
	case 2: {
		int fd = -1;

		rc = om_client_get_fd(c, uri, &fd, &info);
		if (rc == 0) {
			FZ_ASSERT(fd >= 0 && fcntl(fd, F_GETFD) >= 0, "descriptor %d", fd);
			close(fd);
		}
		break;
	}
	case 3: {
		void *meta = NULL;
		uint32_t mlen = 0;

		rc = om_client_stat(c, uri, (op & 8) ? OM_GET_WANT_META : 0, &info, &meta, &mlen);
		free(meta);
		break;
	}
	case 4: {
		char *text = NULL;

		rc = om_client_stats_ex(c, (op & 8) ? OM_STATS_PROMETHEUS : 0, &text);
		if (rc == 0)
			FZ_ASSERT(text != NULL && strlen(text) < (1u << 30), "stats text");
		free(text);
		break;
	}
	case 5:
		rc = om_client_ping(c);
		break;
	case 6:
		rc = om_client_delete(c, uri);
		break;
	case 7: {
		om_put_opts_t o = { "k: v\r\n", 6, 1800000000, (op & 8) ? 1u : 0u };

		rc = om_client_put(c, uri, "hello", 5, (op & 16) ? &o : NULL, &info);
		break;
	}
	case 8: {
		int mfd = memfd_create("fuzz_put", MFD_CLOEXEC);

		FZ_ASSERT(mfd >= 0 && write(mfd, "hello", 5) == 5, "memfd");
		rc = om_client_put_fd(c, uri, mfd, 5, NULL, &info);
		close(mfd);
		break;
	}
	case 10: {
		unsigned left = 3;

		rc = om_client_list(c, (op & 8) ? NULL : uri, check_entry, (op & 16) ? &left : NULL);
		FZ_ASSERT(rc <= 0 || rc == 7, "list: %d", rc);
		break;
	}
	case 11: {
		uint64_t n = 12345;

		rc = om_client_purge(c, uri, &n);
		FZ_ASSERT(rc <= 0, "purge: %d", rc);
		break;
	}
	default: {
		int rcs[3];

		/* objs[i] is the caller's where rcs[i] is 0, even if the
		 * connection failed later (rc < 0); every rcs[i] is 0 or an error. */
		rc = om_client_get_batch(c, 3, uris, mode, 0, objs, rcs);
		for (int i = 0; i < 3; i++) {
			FZ_ASSERT(rcs[i] <= 0, "batch: rcs[%d] = %d (rc %d)", i, rcs[i], rc);
			if (rcs[i] == 0)
				om_object_free(&objs[i]);
		}
		break;
	}
	}
	(void)rc;
	FZ_ASSERT(om_client_message(c) != NULL, "message");
}

/* Every stream of the input through the decoder directly. */
static void
decode_streams(fz_in_t in)
{
	om_decoder_t *d;
	om_response_t r;

	FZ_ASSERT(om_decoder_new(&d) == 0, "om_decoder_new");
	while (in.n >= 3) {
		uint8_t flags = fz_u8(&in);
		uint16_t n = fz_u16(&in);
		size_t off = 0;
		int rc = 0;

		if (n > in.n)
			n = (uint16_t)in.n;
		while (off < n && rc >= 0) {
			/* Piece sizes from the bytes themselves: 1 to 64. */
			size_t k = (size_t)(in.p[off] % 64u) + 1u;
			int mfd = -1;

			if (k > n - off)
				k = n - off;
			if (off == 0 && (flags & 1)) {
				mfd = memfd_create("fuzz_decode", MFD_CLOEXEC);
				FZ_ASSERT(mfd >= 0, "memfd");
			}
			rc = om_decoder_feed(d, in.p + off, k, &mfd, mfd >= 0 ? 1u : 0u);
			off += k;
			while (rc >= 0 && (rc = om_decoder_next(d, &r)) == 1) {
				FZ_ASSERT((r.fd >= 0) == (r.body == OM_BODY_DESCRIPTOR), "fd %d, body %d", r.fd,
				    r.body);
				FZ_ASSERT(r.data == NULL || r.body == OM_BODY_INLINE, "data with body %d", r.body);
				FZ_ASSERT(r.body != OM_BODY_INLINE || r.data != NULL || r.rc == -OM_ENOMEM,
				    "inline body without data");
				FZ_ASSERT((r.meta == NULL) == (r.meta_len == 0) || r.rc == -OM_ENOMEM, "meta");
				FZ_ASSERT(strlen(r.msg) < sizeof(r.msg), "msg");
				{
					uint64_t cur = 1, cnt = 1;
					int lr = om_response_list(&r, &cur, check_entry, NULL);
					int pr = om_response_purge(&r, &cur, &cnt);

					FZ_ASSERT(lr == 0 || lr == r.rc || lr == -OM_EPROTO, "list page: %d", lr);
					FZ_ASSERT(pr == 0 || pr == r.rc || pr == -OM_EPROTO, "purge step: %d", pr);
					FZ_ASSERT(lr != 0 || r.op == OM_OP_LIST, "a page of op %d", r.op);
					FZ_ASSERT(pr != 0 || (r.op == OM_OP_PURGE && r.len == 16), "a step");
				}
				om_response_free(&r);
			}
			FZ_ASSERT(rc <= 0 && (rc == 0 || om_decoder_message(d)[0] != '\0'),
			    "next: %d without a message", rc);
		}
		in.p += n;
		in.n -= n;
		/* Each stream is a connection of its own. */
		om_decoder_reset(d);
	}
	om_decoder_free(d);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_in_t in = { data, size };
	uint8_t ops[8], first = fz_u8(&in);
	unsigned nops = first % 9;
	int before = lowest_free_fd(), rc;
	om_client_t *c = NULL;

	for (unsigned i = 0; i < nops; i++)
		ops[i] = fz_u8(&in);
	streams = in;
	nserver = 0;
	rc = om_client_connect("unix:" SOCK_PATH, first & 0x80 ? OM_CLIENT_OFFSET_READS : 0, &c);
	if (rc == 0) {
		const om_caps_t *caps = om_client_caps(c);

		FZ_ASSERT(caps != NULL && strnlen(caps->server, sizeof(caps->server)) <
		    sizeof(caps->server), "caps");
		for (unsigned i = 0; i < nops; i++)
			run_op(c, ops[i]);
	}
	om_client_close(c);
	for (unsigned i = 0; i < nserver; i++)
		close(server_ends[i]);
	decode_streams(in);
	/* Higher: one was left open; lower: one not the client's was closed. */
	FZ_ASSERT(lowest_free_fd() == before, "lowest free descriptor %d before, %d after", before,
	    lowest_free_fd());
	return 0;
}
