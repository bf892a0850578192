/*
 * The fault layer's control block (see om_fault.h): created and armed by
 * the tests, read by the wrappers of om_fault.c in the processes watched.
 * Linked into every test that drives faults, and into om_fault.so.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "om_fault.h"

static const char *const call_names[OM_FC_NCALLS] = {
	[OM_FC_OPEN] = "openat",
	[OM_FC_WRITE] = "write",
	[OM_FC_PREAD] = "pread",
	[OM_FC_COPY] = "copy_file_range",
	[OM_FC_SENDFILE] = "sendfile",
	[OM_FC_FALLOCATE] = "fallocate",
	[OM_FC_FSETXATTR] = "fsetxattr",
	[OM_FC_GETXATTR] = "getxattr",
	[OM_FC_FCHMOD] = "fchmod",
	[OM_FC_FSYNC] = "fsync",
	[OM_FC_LINKAT] = "linkat",
	[OM_FC_RENAMEAT] = "renameat",
	[OM_FC_UNLINKAT] = "unlinkat",
	[OM_FC_MKDIRAT] = "mkdirat",
	[OM_FC_FSTATAT] = "fstatat",
	[OM_FC_FCHOWNAT] = "fchownat",
	[OM_FC_READDIR] = "readdir",
	[OM_FC_PWRITEV] = "pwritev",
};

__attribute__((visibility("default"))) const char *
om_fault_call_name(unsigned call)
{
	return call < OM_FC_NCALLS ? call_names[call] : "?";
}

__attribute__((visibility("default"))) const char *
om_fault_kind_name(enum om_fault_action action, int err)
{
	switch (action) {
	case OM_FA_COUNT: return "count";
	case OM_FA_KILL: return "kill";
	case OM_FA_SHORT: return "short";
	case OM_FA_ERRNO:
		switch (err) {
		case ENOSPC: return "ENOSPC";
		case EIO: return "EIO";
		case EMFILE: return "EMFILE";
		case EINTR: return "EINTR";
		case EDQUOT: return "EDQUOT";
		case ENOMEM: return "ENOMEM";
		default: return "errno";
		}
	}
	return "?";
}

__attribute__((visibility("default"))) om_fault_ctl_t *
om_fault_create(const char *path)
{
	om_fault_ctl_t *c;
	int fd = -1;

	if (path != NULL) {
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || ftruncate(fd, sizeof(*c)) != 0) {
			if (fd >= 0)
				close(fd);
			return NULL;
		}
	}
	c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
	    MAP_SHARED | (fd < 0 ? MAP_ANONYMOUS : 0), fd, 0);
	if (fd >= 0)
		close(fd);
	if (c == MAP_FAILED)
		return NULL;
	memset(c, 0, sizeof(*c));
	__atomic_store_n(&c->magic, OM_FAULT_MAGIC, __ATOMIC_SEQ_CST);
	return c;
}

__attribute__((visibility("default"))) void
om_fault_destroy(om_fault_ctl_t *c)
{
	if (c != NULL)
		munmap(c, sizeof(*c));
}

__attribute__((visibility("default"))) void
om_fault_arm(om_fault_ctl_t *c, pid_t pid, uint32_t mask, uint64_t at,
    enum om_fault_action action, int err)
{
	__atomic_store_n(&c->armed, 0, __ATOMIC_SEQ_CST);
	c->pid = (int32_t)pid;
	c->mask = mask;
	c->at = at;
	c->action = (uint32_t)action;
	c->err = err;
	c->fired = 0;
	c->fired_call = 0;
	memset(c->per_call, 0, sizeof(c->per_call));
	__atomic_store_n(&c->count, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&c->armed, 1, __ATOMIC_SEQ_CST);
}

__attribute__((visibility("default"))) void
om_fault_disarm(om_fault_ctl_t *c)
{
	__atomic_store_n(&c->armed, 0, __ATOMIC_SEQ_CST);
}
