/*
 * libobjmapper's non-blocking core (src/client/nb.c) over a socketpair:
 * requests encoded byte for byte as docs/PROTOCOL.md shows them, and the
 * decoder fed by om_decoder_recv and om_decoder_feed: responses whole and
 * cut anywhere, pipelined, with descriptors (counted from /proc), large
 * inline bodies, GOAWAY, and streams that break the protocol.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_test.h"
#include "proto/om_proto.h"

/* The example of docs/PROTOCOL.md: GET /a, mode auto, id 7, and its
 * answer of 3 inline bytes. */
static const uint8_t EX_REQ[] = {
	0x4f, 0x4d, 0x01, 0x02, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x2f, 0x61,
};
static const uint8_t EX_RESP[] = {
	0x4f, 0x4d, 0x01, 0x02, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb7, 0x3f, 0x4b, 0x36, 0x00, 0x00, 0x00, 0x00,
	0x61, 0x62, 0x63,
};

static int
open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own */
}

/* A response header with its parts as the daemon would write it. */
static size_t
resp(uint8_t *b, uint8_t op, uint32_t id, uint16_t status, uint8_t body, uint64_t body_len,
    const char *msg, const void *meta, uint16_t meta_len)
{
	om_resp_t r = { .version = 1, .op = op, .id = id, .status = status, .body = body,
		.body_len = body_len, .obj_id = 40 + id, .crc = 0xabcd, .tier = 1 };
	size_t n = OM_RESP_HDR_LEN;

	r.msg_len = (uint16_t)(msg ? strlen(msg) : 0);
	r.meta_len = meta_len;
	om_proto_put_resp(b, &r);
	if (r.msg_len)
		memcpy(b + n, msg, r.msg_len);
	n += r.msg_len;
	if (meta_len)
		memcpy(b + n, meta, meta_len);
	return n + meta_len;
}

static void
send_with_fd(int s, const void *buf, size_t n, int fd)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { (void *)buf, n };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = sizeof(ctl.b);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	assert_int_equal(sendmsg(s, &mh, MSG_NOSIGNAL), (ssize_t)n);
}

static int
object_file(const char *bytes)
{
	int fd = memfd_create("object", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
	return fd;
}

static void
test_encode(void **state)
{
	uint8_t b[256];
	om_request_t rq = { .op = OM_OP_GET, .id = 7, .uri = "/a", .flags = OM_MODE_AUTO };
	om_request_t put = { .op = OM_OP_PUT, .id = 9, .uri = "/p", .body_len = 5, .meta = "k: v",
		.meta_len = 4, .expires = 1800000000, .flags = OM_PUT_EPHEMERAL };
	om_req_t q;

	(void)state;
	assert_int_equal(om_request_encode(&rq, b, sizeof(b)), sizeof(EX_REQ));
	assert_memory_equal(b, EX_REQ, sizeof(EX_REQ));
	assert_int_equal(om_request_encode(&rq, b, sizeof(EX_REQ) - 1), -OM_ERANGE);
	assert_int_equal(om_request_encode(&put, b, sizeof(b)), 32 + 2 + 4);
	assert_int_equal(om_proto_get_req(b, &q), 0);
	assert_int_equal(q.op, OM_OP_PUT);
	assert_int_equal(q.id, 9);
	assert_int_equal(q.body_len, 5);
	assert_int_equal(q.meta_len, 4);
	assert_int_equal(q.arg, 1800000000);
	assert_int_equal(q.flags, OM_PUT_EPHEMERAL);
	assert_memory_equal(b + 32, "/pk: v", 6);
	/* HELLO carries the highest version and the client's name. */
	rq = (om_request_t){ .op = OM_OP_HELLO, .id = 1, .flags = OM_HELLO_OFFSET_READS };
	assert_true(om_request_encode(&rq, b, sizeof(b)) > 32);
	assert_int_equal(om_proto_get_req(b, &q), 0);
	assert_int_equal(q.arg, 1);
	assert_int_equal(q.flags, OM_HELLO_OFFSET_READS);
	assert_memory_equal(b + 32, "libobjmapper ", 13);
	/* What cannot be a request is refused. */
	rq = (om_request_t){ .op = OM_OP_GET, .uri = "/a/../b" };
	assert_int_equal(om_request_encode(&rq, b, sizeof(b)), -OM_EINVAL);
	rq = (om_request_t){ .op = OM_OP_GET, .uri = NULL };
	assert_int_equal(om_request_encode(&rq, b, sizeof(b)), -OM_EINVAL);
	rq = (om_request_t){ .op = OM_OP_GET, .uri = "/a", .flags = 0x100 };
	assert_int_equal(om_request_encode(&rq, b, sizeof(b)), -OM_EINVAL);
	rq = (om_request_t){ .op = OM_OP_GOAWAY };
	assert_int_equal(om_request_encode(&rq, b, sizeof(b)), -OM_EINVAL);
	rq = (om_request_t){ .op = OM_OP_PING, .uri = "/a" };
	assert_int_equal(om_request_encode(&rq, b, sizeof(b)), -OM_EINVAL);
}

/* The example response, whole and one byte at a time. */
static void
test_decode_example(void **state)
{
	om_decoder_t *d;
	om_response_t r;

	(void)state;
	assert_int_equal(om_decoder_new(&d), 0);
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 0) {
			assert_int_equal(om_decoder_feed(d, EX_RESP, sizeof(EX_RESP), NULL, 0), 0);
		} else {
			for (size_t i = 0; i + 1 < sizeof(EX_RESP); i++) {
				assert_int_equal(om_decoder_feed(d, EX_RESP + i, 1, NULL, 0), 0);
				assert_int_equal(om_decoder_next(d, &r), 0);
				assert_true(om_decoder_need(d) >= 1);
			}
			assert_int_equal(om_decoder_feed(d, EX_RESP + sizeof(EX_RESP) - 1, 1, NULL, 0), 0);
		}
		assert_int_equal(om_decoder_next(d, &r), 1);
		assert_int_equal(r.op, OM_OP_GET);
		assert_int_equal(r.id, 7);
		assert_int_equal(r.rc, 0);
		assert_int_equal(r.body, OM_BODY_INLINE);
		assert_int_equal(r.len, 3);
		assert_memory_equal(r.data, "abc", 3);
		assert_int_equal(r.fd, -1);
		assert_int_equal(r.info.id, 5);
		assert_int_equal(r.info.crc, 0x364b3fb7);
		assert_int_equal(r.info.tier, OM_TIER_PERSISTENT);
		om_response_free(&r);
		assert_int_equal(om_decoder_next(d, &r), 0);
	}
	assert_int_equal(om_decoder_received(d), 2 * sizeof(EX_RESP));
	om_decoder_free(d);
}

/* Over a socketpair: pipelined responses with descriptors, a status, an
 * empty socket, the end of the stream; no descriptor left behind. */
static void
test_socketpair_pipeline(void **state)
{
	int sv[2], before = open_fds(), f1, f2, fd;
	uint8_t b[4096];
	size_t n;
	om_decoder_t *d;
	om_response_t r;
	char got[16] = "";

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(om_decoder_new(&d), 0);
	assert_int_equal(om_decoder_recv(d, sv[0]), -OM_EAGAIN);
	f1 = object_file("first");
	f2 = object_file("second!");
	/* Two descriptor responses, each in its own sendmsg as the daemon
	 * sends them, then a NOT_FOUND and an inline one in one write. */
	n = resp(b, OM_OP_GET, 1, 0, OM_BODY_DESCRIPTOR, 5, NULL, "m1", 2);
	send_with_fd(sv[1], b, n, f1);
	n = resp(b, OM_OP_GET, 2, 0, OM_BODY_DESCRIPTOR, 7, NULL, NULL, 0);
	send_with_fd(sv[1], b, n, f2);
	close(f1);
	close(f2);
	n = resp(b, OM_OP_GET, 3, OM_STATUS_NOT_FOUND, OM_BODY_NONE, 0, "no such object: /c", NULL, 0);
	n += resp(b + n, OM_OP_GET, 4, 0, OM_BODY_INLINE, 2, NULL, NULL, 0);
	memcpy(b + n, "hi", 2);
	n += 2;
	send_with_fd(sv[1], b, n, -1);
	shutdown(sv[1], SHUT_WR);

	for (uint32_t want = 1; want <= 4;) {
		int rc = om_decoder_next(d, &r);

		if (rc == 0) {
			assert_true(om_decoder_recv(d, sv[0]) > 0);
			continue;
		}
		assert_int_equal(rc, 1);
		assert_int_equal(r.id, want);
		switch (want) {
		case 1:
		case 2:
			assert_int_equal(r.body, OM_BODY_DESCRIPTOR);
			fd = om_response_take_fd(&r);
			assert_int_equal(r.fd, -1);
			assert_true(fd >= 0);
			assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
			memset(got, 0, sizeof(got));
			assert_int_equal(pread(fd, got, sizeof(got), 0), (ssize_t)r.len);
			assert_string_equal(got, want == 1 ? "first" : "second!");
			if (want == 1) {
				assert_int_equal(r.meta_len, 2);
				assert_memory_equal(r.meta, "m1", 2);
			}
			close(fd);
			break;
		case 3:
			assert_int_equal(r.rc, -OM_STATUS_NOT_FOUND);
			assert_string_equal(r.msg, "no such object: /c");
			break;
		case 4:
			assert_int_equal(r.rc, 0);
			assert_memory_equal(r.data, "hi", 2);
			break;
		}
		om_response_free(&r);
		want++;
	}
	assert_int_equal(om_decoder_next(d, &r), 0);
	assert_int_equal(om_decoder_recv(d, sv[0]), 0); /* the end */
	om_decoder_free(d);
	close(sv[0]);
	close(sv[1]);
	assert_int_equal(open_fds(), before);
}

/* A 1 MiB inline body, written in pieces while it is decoded: received in
 * place, byte for byte, and the next response after it intact. */
static void
test_large_inline_body(void **state)
{
	const size_t len = 1u << 20;
	uint8_t *obj = malloc(len), h[256];
	int sv[2];
	om_decoder_t *d;
	om_response_t r;
	size_t off = 0, n;
	pid_t pid;

	(void)state;
	om_test_fill(obj, len, 11);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		n = resp(h, OM_OP_GET, 1, 0, OM_BODY_INLINE, len, NULL, NULL, 0);
		(void)write(sv[1], h, n);
		while (off < len) {
			size_t k = len - off < 7777 ? len - off : 7777;

			if (write(sv[1], obj + off, k) != (ssize_t)k)
				_exit(1);
			off += k;
		}
		n = resp(h, OM_OP_PING, 2, 0, OM_BODY_NONE, 0, NULL, NULL, 0);
		(void)write(sv[1], h, n);
		_exit(0);
	}
	close(sv[1]);
	assert_int_equal(om_decoder_new(&d), 0);
	for (int got = 0; got < 2;) {
		int rc = om_decoder_next(d, &r);

		if (rc == 0) {
			rc = om_decoder_recv(d, sv[0]);
			assert_true(rc > 0 || rc == -OM_EAGAIN);
			continue;
		}
		assert_int_equal(rc, 1);
		if (got == 0) {
			assert_int_equal(r.len, len);
			assert_memory_equal(r.data, obj, len);
		} else {
			assert_int_equal(r.op, OM_OP_PING);
			assert_int_equal(r.id, 2);
		}
		om_response_free(&r);
		got++;
	}
	om_test_wait(pid);
	om_decoder_free(d);
	close(sv[0]);
	free(obj);
}

/* GOAWAY is a response like any other (its id: the last request taken). */
static void
test_goaway(void **state)
{
	uint8_t b[256];
	size_t n = resp(b, OM_OP_GOAWAY, 12, 0, OM_BODY_NONE, 0, "reloading", NULL, 0);
	om_decoder_t *d;
	om_response_t r;

	(void)state;
	assert_int_equal(om_decoder_new(&d), 0);
	assert_int_equal(om_decoder_feed(d, b, n, NULL, 0), 0);
	assert_int_equal(om_decoder_next(d, &r), 1);
	assert_int_equal(r.op, OM_OP_GOAWAY);
	assert_int_equal(r.id, 12);
	assert_string_equal(r.msg, "reloading");
	om_response_free(&r);
	om_decoder_free(d);
}

/* Streams that are not the protocol: refused at once, named; the decoder
 * stays broken; held descriptors are closed by reset and free. */
static void
test_broken_streams(void **state)
{
	static const char http[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
	int before = open_fds(), fds[2];
	uint8_t b[256];
	size_t n;
	om_decoder_t *d;
	om_response_t r;

	(void)state;
	assert_int_equal(om_decoder_new(&d), 0);
	/* One byte is enough to know. */
	assert_int_equal(om_decoder_feed(d, "H", 1, NULL, 0), 0);
	assert_int_equal(om_decoder_next(d, &r), -OM_EPROTO);
	assert_non_null(strstr(om_decoder_message(d), "not an objmapper socket"));
	om_decoder_reset(d);
	assert_int_equal(om_decoder_feed(d, http, sizeof(http) - 1, NULL, 0), 0);
	assert_int_equal(om_decoder_next(d, &r), -OM_EPROTO);
	assert_string_equal(om_decoder_message(d),
	    "not an objmapper socket: it answered in HTTP (\"HTTP/1.1 400 Bad Request\")");
	assert_int_equal(om_decoder_next(d, &r), -OM_EPROTO);

	/* A descriptor announced that never came. */
	om_decoder_reset(d);
	n = resp(b, OM_OP_GET, 1, 0, OM_BODY_DESCRIPTOR, 5, NULL, NULL, 0);
	assert_int_equal(om_decoder_feed(d, b, n, NULL, 0), 0);
	assert_int_equal(om_decoder_next(d, &r), -OM_EPROTO);
	assert_non_null(strstr(om_decoder_message(d), "descriptor"));

	/* Another version, an unknown body kind, lengths out of range. */
	om_decoder_reset(d);
	n = resp(b, OM_OP_GET, 1, 0, OM_BODY_NONE, 0, NULL, NULL, 0);
	b[2] = 2;
	assert_int_equal(om_decoder_feed(d, b, n, NULL, 0), 0);
	assert_int_equal(om_decoder_next(d, &r), -OM_EPROTO);
	om_decoder_reset(d);
	n = resp(b, OM_OP_GET, 1, 0, 7, 0, NULL, NULL, 0);
	assert_int_equal(om_decoder_feed(d, b, n, NULL, 0), 0);
	assert_int_equal(om_decoder_next(d, &r), -OM_EPROTO);
	om_decoder_reset(d);
	n = resp(b, OM_OP_GET, 1, 0, OM_BODY_NONE, 0, NULL, NULL, 0);
	om_le16(b + 14, 4000);
	assert_int_equal(om_decoder_feed(d, b, n, NULL, 0), 0);
	assert_int_equal(om_decoder_next(d, &r), -OM_EPROTO);

	/* Descriptors fed and never claimed are closed by reset. */
	om_decoder_reset(d);
	fds[0] = object_file("a");
	fds[1] = object_file("b");
	assert_int_equal(om_decoder_feed(d, NULL, 0, fds, 2), 0);
	assert_int_equal(open_fds(), before + 2);
	om_decoder_reset(d);
	assert_int_equal(open_fds(), before);
	fds[0] = object_file("c");
	assert_int_equal(om_decoder_feed(d, NULL, 0, fds, 1), 0);
	om_decoder_free(d);
	assert_int_equal(open_fds(), before);
}

/* HELLO's capability record. */
static void
test_hello_caps(void **state)
{
	uint8_t b[512];
	om_hello_caps_t hc = { .version = 1, .transport = OM_TRANSPORT_UNIX, .modes = 0xf,
		.max_uri = 1024, .max_meta = 2048, .max_pipeline = 128, .inline_threshold = 65536,
		.flags = OM_CAPS_SHARED_DESCRIPTIONS };
	size_t n = resp(b, OM_OP_HELLO, 1, 0, OM_BODY_INLINE, OM_HELLO_CAPS_LEN + 10, NULL, NULL, 0);
	om_decoder_t *d;
	om_response_t r;
	om_caps_t caps;

	(void)state;
	om_proto_put_caps(b + n, &hc);
	memcpy(b + n + OM_HELLO_CAPS_LEN, "objmapperd", 10);
	n += OM_HELLO_CAPS_LEN + 10;
	assert_int_equal(om_decoder_new(&d), 0);
	assert_int_equal(om_decoder_feed(d, b, n, NULL, 0), 0);
	assert_int_equal(om_decoder_next(d, &r), 1);
	assert_int_equal(om_response_caps(&r, &caps), 0);
	assert_int_equal(caps.max_pipeline, 128);
	assert_int_equal(caps.inline_threshold, 65536);
	assert_int_equal(caps.modes, 0xf);
	assert_true(caps.shared_descriptions);
	assert_string_equal(caps.server, "objmapperd");
	om_response_free(&r);
	om_decoder_free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_decode_example),
		cmocka_unit_test(test_socketpair_pipeline),
		cmocka_unit_test(test_large_inline_body),
		cmocka_unit_test(test_goaway),
		cmocka_unit_test(test_broken_streams),
		cmocka_unit_test(test_hello_caps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
