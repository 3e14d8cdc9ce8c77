/*
 * sandbox/sandbox.c — see sandbox.h and docs/sandbox.md.
 *
 * Landlock is used through raw system calls: the C library has no wrappers and
 * the distribution's kernel headers may be older than the running kernel, so
 * the constants of later ABI versions are defined here and the ruleset only
 * ever asks for what the probed ABI version supports.
 */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <pwd.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <par/par.h>

#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

#define LL_FS_V1                                                                                   \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |   \
     LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR |                                 \
     LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | \
     LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |   \
     LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM)
/* rights that make sense on a file (a rule on a file with directory rights is EINVAL) */
#define LL_FILE_RIGHTS                                                                             \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |   \
     LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV)
#define LL_RO (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
#define LL_RX (LL_RO | LANDLOCK_ACCESS_FS_EXECUTE)

/* The ruleset attribute of the newest ABI this file knows; its size tells the
 * kernel which fields are present. */
struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

const char *const par_sandbox_system_ro[] = {
    "/usr",             /* programs, shared libraries, the Python standard library */
    "/lib",             /* the dynamic loader and libraries (a link into /usr on merged-/usr) */
    "/lib64",           /* the x86-64 dynamic loader path */
    "/etc/ld.so.cache", /* library lookup */
    "/etc/localtime",   /* local time zone */
    NULL,
};

/* What name resolution and TLS read, for a package with the `network`
 * capability only (read-only): resolver and NSS configuration, and the
 * system's trust anchors (/usr/lib/ssl/certs links into /etc/ssl). */
static const char *const network_ro[] = {
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ssl",
    "/etc/ca-certificates.conf",
    NULL,
};

/* Devices and /proc entries, with the rights each one gets. */
static const struct {
    const char *path;
    uint64_t access;
} system_special[] = {
    {"/dev/null", LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                      LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_IOCTL_DEV},
    {"/dev/urandom", LANDLOCK_ACCESS_FS_READ_FILE},
    {"/proc/self", LL_RO}, /* this process's own entries only (maps for sanitizer reports) */
};

/* ---- Landlock ------------------------------------------------------------------------------ */

int par_sandbox_landlock_abi(void)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return abi > 0 ? (int)abi : 0;
}

void par_sandbox_landlock_masks(int abi, uint64_t *fs, uint64_t *net, uint64_t *scoped)
{
    *fs = *net = *scoped = 0;
    if (abi < 1)
        return;
    *fs = LL_FS_V1;
    if (abi >= 2)
        *fs |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        *fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 4)
        *net = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
    if (abi >= 5)
        *fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    if (abi >= 6)
        *scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
}

/* Adds a path-beneath rule. A path that does not exist is skipped unless
 * `required`. Returns 0, or -1 with the reason in `err`. */
static int ll_allow(int rfd, uint64_t handled, const char *path, uint64_t access, int required,
                    par_buf_t *err)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
        if (!required && (errno == ENOENT || errno == ENOTDIR))
            return 0;
        par_buf_appendf(err, "landlock: cannot open %s: %s", path, strerror(errno));
        if (errno == EACCES)
            par_buf_appendf(err,
                            " (uid %d must be able to search every directory above it: "
                            "chmod o+x)",
                            (int)getuid());
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
        access &= LL_FILE_RIGHTS;
    struct landlock_path_beneath_attr pb = {.allowed_access = access & handled, .parent_fd = fd};
    long rc = pb.allowed_access
                  ? syscall(SYS_landlock_add_rule, rfd, LANDLOCK_RULE_PATH_BENEATH, &pb, 0)
                  : 0;
    int e = errno;
    close(fd);
    if (rc != 0) {
        par_buf_appendf(err, "landlock: cannot add a rule for %s: %s", path, strerror(e));
        return -1;
    }
    return 0;
}

/* Returns the ABI applied (> 0), 0 when degraded (reason appended to
 * `degraded`), -1 on a hard error (reason in `err`). */
static int apply_landlock(const par_sandbox_opts_t *o, json_t *degraded, par_buf_t *err)
{
    int abi = par_sandbox_landlock_abi();
    if (abi == 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "landlock: not available in this kernel (%s)", strerror(errno));
        json_array_append_new(degraded, json_string(msg));
        return 0;
    }
    struct ll_ruleset_attr attr = {0};
    par_sandbox_landlock_masks(abi, &attr.handled_access_fs, &attr.handled_access_net,
                               &attr.scoped);
    if (o->network)
        attr.handled_access_net = 0; /* TCP stays open to a package with `network` */
    size_t size = abi >= 6 ? sizeof(attr) : abi >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t);
    int rfd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (rfd < 0) {
        par_buf_appendf(err, "landlock: cannot create a ruleset (ABI %d): %s", abi,
                        strerror(errno));
        return -1;
    }
    uint64_t h = attr.handled_access_fs;
    int rc = ll_allow(rfd, h, o->root, LL_RX, 1, err);
    if (rc == 0 && o->scratch)
        rc = ll_allow(rfd, h, o->scratch, h, 1, err);
    if (rc == 0 && o->exec_path)
        rc = ll_allow(rfd, h, o->exec_path,
                      LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_EXECUTE, 1, err);
    for (size_t i = 0; rc == 0 && par_sandbox_system_ro[i]; i++)
        rc = ll_allow(rfd, h, par_sandbox_system_ro[i], LL_RX, 0, err);
    for (size_t i = 0; rc == 0 && i < sizeof(system_special) / sizeof(system_special[0]); i++)
        rc = ll_allow(rfd, h, system_special[i].path, system_special[i].access, 0, err);
    for (size_t i = 0; rc == 0 && o->network && network_ro[i]; i++)
        rc = ll_allow(rfd, h, network_ro[i], LL_RO, 0, err);
    for (size_t i = 0; rc == 0 && i < o->ro_count; i++)
        rc = ll_allow(rfd, h, o->ro[i], LL_RX, 1, err);
    if (rc == 0 && syscall(SYS_landlock_restrict_self, rfd, 0) != 0) {
        par_buf_appendf(err, "landlock: cannot restrict the process: %s", strerror(errno));
        rc = -1;
    }
    close(rfd);
    return rc == 0 ? abi : -1;
}

/* ---- seccomp ------------------------------------------------------------------------------- */

/* System calls no agent needs, that reach the kernel's most exposed surfaces
 * or act on other processes: refused with EPERM. */
static const char *const seccomp_denied[] = {"ptrace",
                                             "process_vm_readv",
                                             "process_vm_writev",
                                             "mount",
                                             "umount2",
                                             "pivot_root",
                                             "chroot",
                                             "fsopen",
                                             "fsconfig",
                                             "fsmount",
                                             "fspick",
                                             "move_mount",
                                             "open_tree",
                                             "mount_setattr",
                                             "kexec_load",
                                             "kexec_file_load",
                                             "bpf",
                                             "perf_event_open",
                                             "keyctl",
                                             "add_key",
                                             "request_key",
                                             "unshare",
                                             "setns",
                                             "init_module",
                                             "finit_module",
                                             "delete_module",
                                             "io_uring_setup",
                                             "io_uring_enter",
                                             "io_uring_register",
                                             "userfaultfd",
                                             "setsid",
                                             "setpgid",
                                             "tkill",
                                             "swapon",
                                             "swapoff",
                                             "reboot",
                                             "acct",
                                             "quotactl",
                                             "open_by_handle_at",
                                             "name_to_handle_at",
                                             "iopl",
                                             "ioperm",
                                             "syslog",
                                             "vhangup",
                                             "settimeofday",
                                             "clock_settime",
                                             "clock_adjtime",
                                             "adjtimex",
                                             "sethostname",
                                             "setdomainname",
                                             "uselib",
                                             NULL};

/* Signals and pid file descriptors that name a process by pid: only the
 * worker itself may be named (without the `subprocess` capability). */
static const char *const seccomp_self_only[] = {
    "kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", NULL};

static int sc_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
                   const struct scmp_arg_cmp *cmp)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return 0; /* not a system call on this architecture */
    return seccomp_rule_add_array(ctx, action, nr, n, cmp);
}

/* Returns 1 applied, 0 degraded (reason in `degraded`), -1 error (in `err`). */
static int apply_seccomp(const par_sandbox_opts_t *o, json_t *degraded, par_buf_t *err)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL) {
        par_buf_appends(err, "seccomp: cannot create a filter");
        return -1;
    }
    const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
    int rc = 0;
    for (size_t i = 0; rc == 0 && seccomp_denied[i]; i++)
        rc = sc_rule(ctx, eperm, seccomp_denied[i], 0, NULL);
    /* clone3 passes its flags in memory, out of a filter's reach: ENOSYS makes
     * the C library fall back to clone, whose flags are checked below */
    if (rc == 0)
        rc = sc_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL);
    static const uint64_t ns_flags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,    CLONE_NEWUSER,
                                        CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWTIME};
    for (size_t i = 0; rc == 0 && i < sizeof(ns_flags) / sizeof(ns_flags[0]); i++) {
        struct scmp_arg_cmp c = SCMP_A0_64(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]);
        rc = sc_rule(ctx, eperm, "clone", 1, &c);
    }
    if (rc == 0 && !o->subprocess) {
        /* threads yes, processes no */
        struct scmp_arg_cmp c = SCMP_A0_64(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0);
        rc = sc_rule(ctx, eperm, "clone", 1, &c);
        if (rc == 0)
            rc = sc_rule(ctx, eperm, "fork", 0, NULL);
        if (rc == 0)
            rc = sc_rule(ctx, eperm, "vfork", 0, NULL);
        /* SCMP_A0_32 with both data: clang flags the one-datum form (a compound
         * literal missing datum_b) under -Wmissing-field-initializers */
        struct scmp_arg_cmp self = SCMP_A0_32(SCMP_CMP_NE, (uint32_t)getpid(), 0);
        for (size_t i = 0; rc == 0 && seccomp_self_only[i]; i++)
            rc = sc_rule(ctx, eperm, seccomp_self_only[i], 1, &self);
    }
    if (rc == 0 && !o->network) {
        rc = sc_rule(ctx, eperm, "socket", 0, NULL); /* socketpair stays */
    } else if (rc == 0) {
        struct scmp_arg_cmp packet = SCMP_A0_32(SCMP_CMP_EQ, AF_PACKET, 0);
        struct scmp_arg_cmp raw = SCMP_A1_32(SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW);
        rc = sc_rule(ctx, eperm, "socket", 1, &packet);
        if (rc == 0)
            rc = sc_rule(ctx, eperm, "socket", 1, &raw);
    }
    /* personality(0xffffffff) only reads the persona */
    if (rc == 0) {
        struct scmp_arg_cmp q = SCMP_A0_32(SCMP_CMP_NE, 0xffffffffu, 0);
        rc = sc_rule(ctx, eperm, "personality", 1, &q);
    }
    if (rc != 0) {
        par_buf_appendf(err, "seccomp: cannot build the filter: %s", strerror(-rc));
        seccomp_release(ctx);
        return -1;
    }
    rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc != 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "seccomp: the kernel refused the filter (%s)", strerror(-rc));
        json_array_append_new(degraded, json_string(msg));
        return 0;
    }
    return 1;
}

/* ---- the rest ------------------------------------------------------------------------------ */

static int set_limit(int res, const char *name, rlim_t v, par_buf_t *err)
{
    struct rlimit rl = {v, v};
    if (res == RLIMIT_CPU)
        rl.rlim_max = v + 1; /* SIGXCPU at the soft limit, SIGKILL one second later */
    struct rlimit cur;
    if (getrlimit(res, &cur) == 0 && cur.rlim_max != RLIM_INFINITY && cur.rlim_max < rl.rlim_max) {
        rl.rlim_max = cur.rlim_max;
        if (rl.rlim_cur > rl.rlim_max)
            rl.rlim_cur = rl.rlim_max;
    }
    if (setrlimit(res, &rl) != 0) {
        par_buf_appendf(err, "cannot set %s to %llu: %s", name, (unsigned long long)v,
                        strerror(errno));
        return -1;
    }
    return 0;
}

static json_t *limit_json(int res)
{
    struct rlimit rl;
    if (getrlimit(res, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return json_null();
    return json_integer((json_int_t)rl.rlim_cur);
}

int par_sandbox_resolve_ids(const char *user, const char *group, uid_t *uid, gid_t *gid,
                            par_buf_t *err)
{
    char *end;
    struct passwd *pw = NULL;
    unsigned long n = strtoul(user, &end, 10);
    if (*user && *end == '\0') {
        *uid = (uid_t)n;
        pw = getpwuid(*uid);
    } else if ((pw = getpwnam(user)) != NULL) {
        *uid = pw->pw_uid;
    } else {
        par_buf_appendf(err, "sandbox.user: no user '%s' on this machine", user);
        return PAR_E_NOT_FOUND;
    }
    if (group == NULL || *group == '\0') {
        if (pw == NULL) {
            par_buf_appendf(err, "sandbox.group: uid %s has no passwd entry: name a group", user);
            return PAR_E_NOT_FOUND;
        }
        *gid = pw->pw_gid;
        return PAR_OK;
    }
    n = strtoul(group, &end, 10);
    if (*end == '\0') {
        *gid = (gid_t)n;
        return PAR_OK;
    }
    struct group *gr = getgrnam(group);
    if (gr == NULL) {
        par_buf_appendf(err, "sandbox.group: no group '%s' on this machine", group);
        return PAR_E_NOT_FOUND;
    }
    *gid = gr->gr_gid;
    return PAR_OK;
}

static int drop_ids(uid_t uid, gid_t gid, par_buf_t *err)
{
    if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
        par_buf_appendf(err, "cannot switch to uid %d gid %d: %s", (int)uid, (int)gid,
                        strerror(errno));
        return -1;
    }
    uid_t r, e, s;
    gid_t gr, ge, gs;
    if (getresuid(&r, &e, &s) != 0 || getresgid(&gr, &ge, &gs) != 0 || r != uid || e != uid ||
        s != uid || gr != gid || ge != gid || gs != gid || (uid != 0 && setuid(0) == 0)) {
        par_buf_appendf(err, "the switch to uid %d gid %d did not stick", (int)uid, (int)gid);
        return -1;
    }
    return 0;
}

int par_sandbox_apply(const par_sandbox_opts_t *o, json_t **report, par_buf_t *err)
{
    json_t *degraded = json_array();
    json_t *r = json_object();
    int rc = PAR_E_IO;

    /* 1. resource limits */
    if (o->memory_mb && set_limit(RLIMIT_AS, "RLIMIT_AS", (rlim_t)o->memory_mb << 20, err) != 0)
        goto out;
    if (o->file_mb && set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", (rlim_t)o->file_mb << 20, err) != 0)
        goto out;
    if (o->cpu_seconds && set_limit(RLIMIT_CPU, "RLIMIT_CPU", o->cpu_seconds, err) != 0)
        goto out;
    if (o->max_files && set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", o->max_files, err) != 0)
        goto out;
    if (set_limit(RLIMIT_CORE, "RLIMIT_CORE", 0, err) != 0)
        goto out;
    /* under memory pressure the kernel picks a worker, never the runtime */
    int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
        ssize_t w = write(oom, "1000", 4);
        (void)w;
        close(oom);
    }

    /* the ids the worker runs with, as the rest of the system sees them (a user
     * namespace below would show the overflow uid from inside) */
    uid_t uid = getuid();
    gid_t gid = getgid();

    /* 2. no network: an empty network namespace (only a loopback that is down) */
    int netns = 0;
    if (!o->network) {
        int flags = CLONE_NEWNET | (geteuid() == 0 ? 0 : CLONE_NEWUSER);
        if (unshare(flags) == 0) {
            netns = 1;
        } else {
            char msg[200];
            snprintf(msg, sizeof(msg), "netns: cannot create a network namespace (%s)",
                     strerror(errno));
            json_array_append_new(degraded, json_string(msg));
        }
    }

    /* 3. an unprivileged uid/gid */
    int dropped = 0;
    if (geteuid() == 0) {
        if (o->uid > 0) {
            uid = (uid_t)o->uid;
            gid = (gid_t)(o->gid >= 0 ? o->gid : o->uid);
            if (drop_ids(uid, gid, err) != 0)
                goto out;
            dropped = 1;
        } else {
            json_array_append_new(degraded, json_string("uid: the worker runs as root"));
        }
    }
    /* RLIMIT_NPROC counts every process and thread of the real uid: it means
     * something only when that uid belongs to workers alone */
    if (dropped && o->max_procs && set_limit(RLIMIT_NPROC, "RLIMIT_NPROC", o->max_procs, err) != 0)
        goto out;
    if (!dropped && o->max_procs)
        json_array_append_new(degraded,
                              json_string("nproc: not applied (the worker has no uid of its own)"));
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* no core, no /proc/<pid> for same-uid processes */

    /* 4. no way back to privileges through exec */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        par_buf_appendf(err, "cannot set no_new_privs: %s", strerror(errno));
        goto out;
    }

    /* 5. the file system, TCP and signal scopes */
    int ll = apply_landlock(o, degraded, err);
    if (ll < 0)
        goto out;

    /* 6. system calls, last: the steps above need some of what it refuses */
    int sc = apply_seccomp(o, degraded, err);
    if (sc < 0)
        goto out;

    json_object_set_new(r, "enabled", json_true());
    json_object_set_new(r, "no_new_privs", json_true());
    json_object_set_new(r, "landlock", ll > 0 ? json_integer(ll) : json_false());
    json_object_set_new(r, "seccomp", json_boolean(sc > 0));
    json_object_set_new(r, "netns", json_boolean(netns));
    json_object_set_new(r, "network", json_boolean(o->network));
    json_object_set_new(r, "subprocess", json_boolean(o->subprocess));
    json_object_set_new(r, "uid", json_integer((json_int_t)uid));
    json_object_set_new(r, "gid", json_integer((json_int_t)gid));
    json_t *lim = json_object();
    json_t *as = limit_json(RLIMIT_AS);
    if (json_is_integer(as))
        json_integer_set(as, json_integer_value(as) >> 20);
    json_object_set_new(lim, "as_mb", as);
    json_object_set_new(lim, "cpu_s", limit_json(RLIMIT_CPU));
    json_t *fs = limit_json(RLIMIT_FSIZE);
    if (json_is_integer(fs))
        json_integer_set(fs, json_integer_value(fs) >> 20);
    json_object_set_new(lim, "fsize_mb", fs);
    json_object_set_new(lim, "nofile", limit_json(RLIMIT_NOFILE));
    json_object_set_new(lim, "nproc", dropped ? limit_json(RLIMIT_NPROC) : json_null());
    json_object_set_new(lim, "core", limit_json(RLIMIT_CORE));
    json_object_set_new(r, "rlimits", lim);
    json_object_set(r, "degraded", degraded);
    rc = PAR_OK;
out:
    json_decref(degraded);
    if (rc == PAR_OK)
        *report = r;
    else
        json_decref(r);
    return rc;
}
