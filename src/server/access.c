/*
 * Who may do what on a listener: a peer's credentials (Unix) or address
 * (TCP, UDP) against the listener's allow lists. Readers are those on
 * allow_read or allow_write; writers those on allow_write. Worker
 * processes, once per connection (per datagram for UDP).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "server/access.h"

static bool
net_match(const om_conf_acl_t *e, const uint8_t addr[16])
{
	unsigned full = e->prefix / 8, rest = e->prefix % 8;

	if (memcmp(e->addr, addr, full) != 0)
		return false;
	return rest == 0 || ((e->addr[full] ^ addr[full]) & (uint8_t)(0xff00u >> rest)) == 0;
}

static bool
list_match(const om_conf_acl_list_t *l, const om_peer_t *p)
{
	for (unsigned i = 0; i < l->n; i++) {
		const om_conf_acl_t *e = &l->e[i];

		switch (e->kind) {
		case OM_ACL_ANY:
			return true;
		case OM_ACL_UID:
			if (p->has_cred && p->uid == e->id)
				return true;
			break;
		case OM_ACL_GID:
			if (p->has_cred && p->gid == e->id)
				return true;
			for (unsigned g = 0; p->has_cred && g < p->ngroups; g++)
				if (p->groups[g] == e->id)
					return true;
			break;
		case OM_ACL_NET:
			if (p->has_addr && net_match(e, p->addr))
				return true;
			break;
		}
	}
	return false;
}

enum om_access
om_peer_access(const om_listener_t *ls, const om_peer_t *p)
{
	if (list_match(&ls->allow_write, p))
		return OM_ACCESS_WRITE;
	if (list_match(&ls->allow_read, p))
		return OM_ACCESS_READ;
	return OM_ACCESS_NONE;
}

void
om_peer_from_sockaddr(om_peer_t *p, const struct sockaddr *sa)
{
	memset(p, 0, sizeof(*p));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;

		p->addr[10] = p->addr[11] = 0xff;
		memcpy(p->addr + 12, &sin->sin_addr, 4);
		p->has_addr = true;
		inet_ntop(AF_INET, &sin->sin_addr, p->name, sizeof(p->name));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;

		memcpy(p->addr, &sin6->sin6_addr, 16);
		p->has_addr = true;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			inet_ntop(AF_INET, p->addr + 12, p->name, sizeof(p->name));
		else
			inet_ntop(AF_INET6, &sin6->sin6_addr, p->name, sizeof(p->name));
	} else {
		snprintf(p->name, sizeof(p->name), "an unknown peer");
	}
}

int
om_peer_from_socket(om_peer_t *p, int fd, unsigned transport)
{
	memset(p, 0, sizeof(*p));
	if (transport == OM_TRANSPORT_UNIX) {
		struct ucred uc;
		socklen_t len = sizeof(uc);

		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0)
			return -errno;
		p->has_cred = true;
		p->pid = uc.pid;
		p->uid = uc.uid;
		p->gid = uc.gid;
		/* Supplementary groups at connect time (Linux 4.13). Fewer than
		 * all of them only narrows what group entries can match. */
		len = sizeof(p->groups);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, p->groups, &len) == 0)
			p->ngroups = len / sizeof(p->groups[0]);
		snprintf(p->name, sizeof(p->name), "uid %u", (unsigned)uc.uid);
		return 0;
	} else {
		struct sockaddr_storage ss = { .ss_family = AF_UNSPEC };
		socklen_t len = sizeof(ss);

		if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
			return -errno;
		om_peer_from_sockaddr(p, (struct sockaddr *)&ss);
		return 0;
	}
}
