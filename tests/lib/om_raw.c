/*
 * Raw protocol frames for integration tests (see om_raw.h).
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "om_raw.h"
#include "om_test.h"

int
om_raw_connect_unix_flags(const char *path, int flags)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	int fd;

	assert_true(len < sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
	assert_true(fd >= 0);
	memcpy(sa.sun_path, path, len + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		fail_msg("connect(%s) failed: %s", path, strerror(errno));
	return fd;
}

int
om_raw_connect_unix(const char *path)
{
	return om_raw_connect_unix_flags(path, 0);
}

void
om_raw_send_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		assert_true(w > 0);
		p += w;
		n -= (size_t)w;
	}
}

void
om_raw_send_with_fd(int fd, const void *buf, size_t n, int pass_fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = { (void *)buf, n }; /* sendmsg does not write it */
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;
	ssize_t w;

	memset(&ctl, 0, sizeof(ctl));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
	w = sendmsg(fd, &mh, MSG_NOSIGNAL);
	assert_true(w > 0);
	om_raw_send_all(fd, (const char *)buf + w, n - (size_t)w);
}

unsigned long long
om_raw_stat_value(int fd, const char *series)
{
	static char text[1 << 16];
	uint8_t req[OM_REQ_HDR_LEN];
	size_t n = strlen(series);
	om_resp_t r;

	memset(text, 0, sizeof(text));
	om_raw_send_all(fd, req, om_raw_req(req, OM_OP_STATS, 0x5747, 0, NULL, 0, 0));
	assert_int_equal(om_raw_read_resp_body(fd, &r, NULL, 0, text, sizeof(text) - 1), 0);
	for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtoull(p + n + 1, NULL, 10);
	}
	if (strchr(series, '{') == NULL)
		fail_msg("no series %s in STATS", series);
	return 0;
}

size_t
om_raw_req(uint8_t *buf, uint8_t op, uint32_t id, uint32_t flags, const char *uri,
    uint16_t meta_len, uint64_t body_len)
{
	om_req_t q = { .version = 1, .op = op, .id = id, .flags = flags, .meta_len = meta_len,
		.body_len = body_len };
	size_t ulen = uri ? strlen(uri) : 0;

	q.uri_len = (uint16_t)ulen;
	if (op == OM_OP_HELLO)
		q.arg = 1;
	om_proto_put_req(buf, &q);
	if (ulen)
		memcpy(buf + OM_REQ_HDR_LEN, uri, ulen);
	return OM_REQ_HDR_LEN + ulen;
}

/* Exactly n bytes within timeout_ms: 0, or -1 on EOF, error or timeout. */
static int
read_full(int fd, void *buf, size_t n, int timeout_ms)
{
	uint8_t *p = buf;
	uint64_t end = om_test_now_ms() + (uint64_t)timeout_ms;

	while (n > 0) {
		struct pollfd pf = { fd, POLLIN, 0 };
		uint64_t t = om_test_now_ms();
		ssize_t r;

		if (t >= end || poll(&pf, 1, (int)(end - t)) != 1)
			return -1;
		r = recv(fd, p, n, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int
om_raw_read_resp_body(int fd, om_resp_t *r, char *msg, size_t msgcap, void *body,
    size_t bodycap)
{
	uint8_t h[OM_RESP_HDR_LEN], chunk[4096];
	uint64_t rest, at = 0;

	if (msgcap > 0)
		msg[0] = '\0';
	if (read_full(fd, h, sizeof(h), 5000) != 0)
		return -1;
	assert_int_equal(om_proto_get_resp(h, r), 0);
	rest = (uint64_t)r->msg_len + r->meta_len + (r->body == OM_BODY_INLINE ? r->body_len : 0);
	while (at < rest) {
		size_t n = rest - at < sizeof(chunk) ? (size_t)(rest - at) : sizeof(chunk);

		if (read_full(fd, chunk, n, 5000) != 0)
			return -1;
		for (size_t i = 0; i < n; i++, at++) {
			uint64_t b = at - r->msg_len - r->meta_len;

			if (at < r->msg_len && at + 1 < msgcap) {
				msg[at] = (char)chunk[i];
				msg[at + 1] = '\0';
			} else if (body != NULL && at >= (uint64_t)r->msg_len + r->meta_len &&
			    b < bodycap) {
				((uint8_t *)body)[b] = chunk[i];
			}
		}
	}
	return r->status;
}

int
om_raw_read_resp(int fd, om_resp_t *r, char *msg, size_t msgcap)
{
	return om_raw_read_resp_body(fd, r, msg, msgcap, NULL, 0);
}

void
om_raw_assert_closed(int fd)
{
	struct pollfd p = { fd, POLLIN, 0 };
	char ch;

	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_true(recv(fd, &ch, 1, MSG_DONTWAIT) <= 0);
}
