/*
 * Who is at the other end of a connection or datagram, and what a
 * listener's allow lists let it do (access.c). Worker processes only.
 */
#ifndef OM_ACCESS_H
#define OM_ACCESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "server/om_server.h"

/* Who is at the other end: credentials (Unix) or an address (TCP, UDP). */
typedef struct {
	bool has_cred, has_addr;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t groups[64];
	unsigned ngroups;
	uint8_t addr[16];     /* IPv4 mapped into IPv6 */
	char name[64];        /* "uid 1000", "127.0.0.2", for messages */
} om_peer_t;

/* Who is at the other end of an accepted socket; 0 or -errno. */
int om_peer_from_socket(om_peer_t *p, int fd, unsigned transport);
void om_peer_from_sockaddr(om_peer_t *p, const struct sockaddr *sa);
enum om_access om_peer_access(const om_listener_t *ls, const om_peer_t *p);

#endif
