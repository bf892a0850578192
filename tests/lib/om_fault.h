/*
 * Fault injection over the system calls the storage engine's write paths
 * (and the rebuild) make. tests/lib/om_fault.c defines those calls
 * (openat, write, fsetxattr, linkat ...) and forwards them to the C
 * library (dlsym RTLD_NEXT); it is used two ways:
 *
 *  - linked into a test binary (test_faults): the engine, linked
 *    statically into the same binary, calls the wrappers; the test drives
 *    them through a control block in shared memory (om_fault_use);
 *  - built as build/tests/om_fault.so and preloaded (LD_PRELOAD) into an
 *    unmodified objmapperd: the control block is the file named by
 *    OM_FAULT_CTL (made by om_fault_create), mapped on the first call, or
 *    a private one set up from OM_FAULT_AT, OM_FAULT_ACTION, OM_FAULT_CALLS,
 *    OM_FAULT_PID, with OM_FAULT_COUNT_FILE written at exit (for use by
 *    hand; see docs/ARCHITECTURE.md, "Fault injection").
 *
 * While armed, every call of a selected kind made by the selected process
 * is counted (calls on sockets, pipes and character devices are not: only
 * files and directories); the at-th one is hit: the process kills itself
 * with SIGKILL, or the call fails with an errno without doing anything, or
 * (data calls only) it moves half the bytes asked for. Only one call is
 * hit per arming. With action COUNT nothing is hit: the test learns how
 * many calls (and which, in order) an operation makes, then arms at
 * k = 1 .. that many.
 */
#ifndef OM_FAULT_H
#define OM_FAULT_H

#include <stdint.h>
#include <sys/types.h>

/* The calls, by kind (several functions may share one). */
enum om_fault_call {
	OM_FC_OPEN = 0,   /* open, openat */
	OM_FC_WRITE,      /* write, pwrite */
	OM_FC_PREAD,      /* pread */
	OM_FC_COPY,       /* copy_file_range */
	OM_FC_SENDFILE,   /* sendfile */
	OM_FC_FALLOCATE,
	OM_FC_FSETXATTR,
	OM_FC_GETXATTR,   /* fgetxattr, lgetxattr, getxattrat (syscall) */
	OM_FC_FCHMOD,
	OM_FC_FSYNC,      /* fsync, fdatasync */
	OM_FC_LINKAT,
	OM_FC_RENAMEAT,
	OM_FC_UNLINKAT,
	OM_FC_MKDIRAT,
	OM_FC_FSTATAT,
	OM_FC_FCHOWNAT,
	OM_FC_READDIR,
	OM_FC_PWRITEV,    /* pwritev (a pack's entry, store_pack.c) */
	OM_FC_NCALLS
};
#define OM_FC_BIT(c) (1u << (c))
/* Calls that move bytes (the only ones a "short" fault applies to). */
#define OM_FC_DATA (OM_FC_BIT(OM_FC_WRITE) | OM_FC_BIT(OM_FC_PREAD) | \
	OM_FC_BIT(OM_FC_COPY) | OM_FC_BIT(OM_FC_SENDFILE) | OM_FC_BIT(OM_FC_PWRITEV))

enum om_fault_action {
	OM_FA_COUNT = 0, /* count only */
	OM_FA_KILL,      /* SIGKILL to the whole process */
	OM_FA_ERRNO,     /* fail with `err`, doing nothing */
	OM_FA_SHORT,     /* data calls: move half the bytes (at least 1) */
};

#define OM_FAULT_MAGIC   0x544c4146u /* "FALT" */
#define OM_FAULT_SEQ_MAX 8192

/* The control block, shared by the test and the processes it watches. */
typedef struct {
	uint32_t magic;
	uint32_t armed;      /* 0: every call passes through uncounted */
	int32_t pid;         /* count only this process; 0 = any */
	uint32_t mask;       /* OM_FC_BIT()s counted; 0 = all */
	uint32_t action;     /* enum om_fault_action */
	int32_t err;         /* errno for OM_FA_ERRNO */
	uint64_t at;         /* the call hit (1 = the first counted) */
	uint64_t count;      /* calls counted since arming */
	uint64_t fired;      /* 0, or the number of the call that was hit */
	uint32_t fired_call; /* its kind */
	uint32_t pad;
	uint64_t per_call[OM_FC_NCALLS];
	uint8_t seq[OM_FAULT_SEQ_MAX]; /* kind of each counted call, in order */
} om_fault_ctl_t;

/* A new control block (disarmed): in the file `path` (created, for
 * OM_FAULT_CTL), or with path NULL an anonymous shared mapping that forked
 * children share. NULL on error. */
om_fault_ctl_t *om_fault_create(const char *path);
void om_fault_destroy(om_fault_ctl_t *c);
/* The wrappers of this process use c (NULL: none; every call passes). */
void om_fault_use(om_fault_ctl_t *c);
/* Arms: counts calls of `mask` (0 = all) made by `pid` (0 = any) and
 * hits the at-th (at 0 = none). Resets the counts. */
void om_fault_arm(om_fault_ctl_t *c, pid_t pid, uint32_t mask, uint64_t at,
    enum om_fault_action action, int err);
void om_fault_disarm(om_fault_ctl_t *c);
const char *om_fault_call_name(unsigned call);
/* "ENOSPC", "kill", "short" ... for messages. */
const char *om_fault_kind_name(enum om_fault_action action, int err);

#endif
