/*
 * Raw protocol for integration tests: frames built by hand and sent on a
 * plain Unix socket, responses read back byte by byte, for what
 * libobjmapper would never send (bad frames, lying lengths, clients that
 * stall or never read). Failures fail the calling test.
 */
#ifndef OM_RAW_H
#define OM_RAW_H

#include <stddef.h>
#include <stdint.h>

#include "proto/om_proto.h"

/* A connected stream socket (SOCK_CLOEXEC | flags, e.g. SOCK_NONBLOCK). */
int om_raw_connect_unix_flags(const char *path, int flags);
int om_raw_connect_unix(const char *path);
/* Sends all n bytes (MSG_NOSIGNAL); asserts. */
void om_raw_send_all(int fd, const void *buf, size_t n);
/* Sends all n bytes, descriptor pass_fd attached to the first (SCM_RIGHTS). */
void om_raw_send_with_fd(int fd, const void *buf, size_t n, int pass_fd);
/* STATS over the connection: the value of one series (a labeled series
 * left out is 0); asserts. */
unsigned long long om_raw_stat_value(int fd, const char *series);
/*
 * Writes a version 1 request header and the URI (NULL: none) into buf;
 * meta_len and body_len are only announced, nothing follows. A HELLO
 * asks for protocol version 1. Returns the bytes written.
 */
size_t om_raw_req(uint8_t *buf, uint8_t op, uint32_t id, uint32_t flags, const char *uri,
    uint16_t meta_len, uint64_t body_len);
/*
 * Reads one response within 5 s: its message (NUL-terminated, cut to
 * msgcap) and, with body non-NULL, its inline body (at most bodycap bytes
 * kept); the rest is read and dropped. Returns its status, or -1 if the
 * connection closed (or nothing came) first.
 */
int om_raw_read_resp_body(int fd, om_resp_t *r, char *msg, size_t msgcap, void *body,
    size_t bodycap);
int om_raw_read_resp(int fd, om_resp_t *r, char *msg, size_t msgcap);
/* The peer closed the connection: EOF within 5 s, nothing before it. */
void om_raw_assert_closed(int fd);

#endif
