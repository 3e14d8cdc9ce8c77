/*
 * loader/spawn.c — see spawn.h.
 */
#include "loader/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <par/par.h>

#include "obs/log.h"
#include "pkg/dotenv.h"
#include "util/fs.h"

/* par-worker's own limits, applied before it loads package code. */
static void limit_args(const par_pool_spec_t *spec, unsigned sandbox_memory_mb, par_strvec_t *a)
{
    if (spec->cpu_seconds) {
        par_strvec_push(a, "--cpu-seconds");
        par_strvec_pushf(a, "%u", spec->cpu_seconds);
    }
    if (spec->scratch_mb) { /* no single file larger than the whole quota */
        par_strvec_push(a, "--file-size-mb");
        par_strvec_pushf(a, "%u", spec->scratch_mb);
    }
    if (sandbox_memory_mb) {
        par_strvec_push(a, "--memory-mb");
        par_strvec_pushf(a, "%u", sandbox_memory_mb);
    }
    if (spec->uid >= 0) {
        par_strvec_push(a, "--uid");
        par_strvec_pushf(a, "%ld", spec->uid);
        par_strvec_push(a, "--gid");
        par_strvec_pushf(a, "%ld", spec->gid);
    }
    if (spec->max_files) {
        par_strvec_push(a, "--max-files");
        par_strvec_pushf(a, "%u", spec->max_files);
    }
    if (spec->max_processes) {
        par_strvec_push(a, "--max-processes");
        par_strvec_pushf(a, "%u", spec->max_processes);
    }
    if (par_manifest_has_capability(spec->manifest, "network"))
        par_strvec_push(a, "--network");
    if (par_manifest_has_capability(spec->manifest, "subprocess"))
        par_strvec_push(a, "--subprocess");
}

/* What the interpreter reads besides /usr: the shim's directory, the
 * package's site-packages, and the prefix of an interpreter installed
 * outside /usr (/opt/python3.12/bin/python3: its standard library). */
static void python_ro_args(const par_pool_spec_t *spec, par_strvec_t *a)
{
    char *shim_dir = strdup(spec->python_shim);
    char *slash = shim_dir ? strrchr(shim_dir, '/') : NULL;
    if (shim_dir == NULL)
        a->failed = 1;
    if (slash && slash != shim_dir) {
        *slash = '\0';
        par_strvec_push(a, "--ro");
        par_strvec_push_owned(a, shim_dir);
    } else {
        free(shim_dir);
    }
    if (spec->python_site) {
        par_strvec_push(a, "--ro");
        par_strvec_push(a, spec->python_site);
    }
    char real[PATH_MAX];
    if (realpath(spec->python, real) && strncmp(real, "/usr/", 5) != 0) {
        char *bin = strrchr(real, '/');
        if (bin && bin != real) {
            *bin = '\0';
            char *prefix = strrchr(real, '/');
            if (prefix && prefix != real)
                *prefix = '\0';
            par_strvec_push(a, "--ro");
            par_strvec_push(a, real);
        }
    }
}

/* par-worker execs the interpreter with the shim. -I: no PYTHON* variables,
 * no user site, no script directory on sys.path; -S: no site module (no
 * system site-packages, nothing read from /etc); -B: the package directory is
 * never written to. A package's requirements come in through --site.
 * Everything after --exec is the interpreter's. */
static void python_args(const par_pool_spec_t *spec, unsigned memory_mb, par_strvec_t *a)
{
    par_strvec_push(a, "--fd");
    par_strvec_push(a, "3");
    par_strvec_push(a, "--root");
    par_strvec_push(a, spec->root);
    python_ro_args(spec, a);
    par_strvec_push(a, "--exec");
    par_strvec_push(a, spec->python);
    par_strvec_push(a, "-I");
    par_strvec_push(a, "-S");
    par_strvec_push(a, "-B");
    par_strvec_push(a, spec->python_shim);
    if (spec->python_site) {
        par_strvec_push(a, "--site");
        par_strvec_push(a, spec->python_site);
    }
    if (memory_mb) {
        par_strvec_push(a, "--memory-mb");
        par_strvec_pushf(a, "%u", memory_mb);
    }
    if (spec->cpu_seconds) {
        par_strvec_push(a, "--cpu-seconds");
        par_strvec_pushf(a, "%u", spec->cpu_seconds);
    }
}

/* A plugin loader's program (par_pool_spec_t.exec_argv): its directories
 * readable, then --exec with its arguments; the standard worker arguments
 * follow (par_spawn_argv), as they do for the Python worker. */
static void exec_args(const par_pool_spec_t *spec, par_strvec_t *a)
{
    par_strvec_push(a, "--fd");
    par_strvec_push(a, "3");
    par_strvec_push(a, "--root");
    par_strvec_push(a, spec->root);
    for (size_t i = 0; spec->exec_ro && spec->exec_ro[i]; i++) {
        par_strvec_push(a, "--ro");
        par_strvec_push(a, spec->exec_ro[i]);
    }
    par_strvec_push(a, "--exec");
    for (size_t i = 0; spec->exec_argv[i]; i++)
        par_strvec_push(a, spec->exec_argv[i]);
}

int par_spawn_argv(const par_pool_spec_t *spec, unsigned *memory_mb, char ***out)
{
    const par_manifest_t *m = spec->manifest;
    int python = m->runtime_kind == PAR_RUNTIME_PYTHON && spec->exec_argv == NULL;
    *memory_mb = spec->memory_mb;
#ifdef PAR_SANITIZE_BUILD
    /* AddressSanitizer reserves terabytes of address space: no RLIMIT_AS for
     * an instrumented process. The Python shim applies the limit itself,
     * after par-worker has exec'd the (uninstrumented) interpreter. */
    if (!python)
        *memory_mb = 0;
    unsigned sandbox_memory_mb = 0;
#else
    unsigned sandbox_memory_mb = spec->exec_argv && spec->exec_own_memory ? 0 : *memory_mb;
#endif
    /* par-worker puts itself in the sandbox (docs/sandbox.md), then runs the
     * package: native exports itself, Python by exec'ing the interpreter. */
    par_strvec_t a = PAR_STRVEC_INIT;
    par_strvec_push(&a, spec->worker_path);
    limit_args(spec, sandbox_memory_mb, &a);
    if (python)
        python_args(spec, *memory_mb, &a);
    else if (spec->exec_argv)
        exec_args(spec, &a);
    par_strvec_push(&a, "--fd");
    par_strvec_push(&a, "3");
    par_strvec_push(&a, "--root");
    par_strvec_push(&a, spec->root);
    par_strvec_push(&a, "--max-input");
    par_strvec_pushf(&a, "%zu", spec->max_input);
    par_strvec_push(&a, "--max-output");
    par_strvec_pushf(&a, "%zu", spec->max_output);
    if (spec->max_event) { /* emit checks it before it sends: docs/worker-protocol.md */
        par_strvec_push(&a, "--max-event");
        par_strvec_pushf(&a, "%zu", spec->max_event);
    }
    for (size_t i = 0; i < m->export_count; i++) {
        par_strvec_push(&a, "--export");
        par_strvec_pushf(&a, "%s=%s", m->exports[i].name, m->exports[i].entrypoint);
    }
    *out = par_strvec_steal(&a);
    return *out ? PAR_OK : PAR_E_NO_MEMORY;
}

static void log_env_warnings(const par_pool_spec_t *spec, const par_buf_t *warn)
{
    par_logline_t l;
    if (warn->len && par_log_begin(&l, PAR_LOG_WARN, "package environment")) {
        par_log_str(&l, "package", spec->name);
        par_log_str(&l, "version", spec->version);
        par_log_strn(&l, "warnings", warn->data, warn->len);
        par_log_end(&l);
    }
}

/* Sets NAME=value, replacing an earlier NAME. */
static void env_set(par_strvec_t *e, const char *kv)
{
    size_t n = strcspn(kv, "=");
    for (size_t i = 0; i < e->len; i++)
        if (strncmp(e->v[i], kv, n) == 0 && e->v[i][n] == '=') {
            par_strvec_set_owned(e, i, strdup(kv));
            return;
        }
    par_strvec_push(e, kv);
}

/* A scrubbed environment: the package's own (.env, then agent.yaml
 * `environment`, `${NAME}` only for names the operator allows). */
int par_spawn_envp(const par_pool_spec_t *spec, char ***out)
{
    par_envlist_t env = {0};
    par_buf_t warn;
    par_buf_init(&warn, 0);
    par_package_env(spec->root, spec->manifest, spec->env_allow, &env, &warn);
    log_env_warnings(spec, &warn);
    par_buf_free(&warn);
    par_strvec_t e = PAR_STRVEC_INIT;
    par_strvec_push(&e, "PATH=/usr/local/bin:/usr/bin:/bin");
    par_strvec_push(&e, "LANG=C.UTF-8");
    if (spec->manifest->runtime_kind == PAR_RUNTIME_PYTHON)
        /* glibc reserves 64 MiB of address space per malloc arena, one per
         * thread up to 8 per core: under RLIMIT_AS that starves threads */
        par_strvec_push(&e, "MALLOC_ARENA_MAX=2");
#ifdef PAR_SANITIZE_BUILD
    /* Sanitizer builds: a deliberate agent crash must end the worker with its
     * signal, as in production; memory errors are still caught by the
     * instrumentation itself. */
    par_strvec_push(&e, "ASAN_OPTIONS=handle_segv=0:handle_sigbus=0:handle_abort=0:"
                        "handle_sigfpe=0:detect_leaks=0");
#endif
    for (size_t i = 0; i < env.count; i++) {
        int path = strncmp(env.items[i], "PATH=", 5) == 0;
        if (path || strncmp(env.items[i], "LANG=", 5) == 0)
            par_strvec_set_owned(&e, path ? 0 : 1, env.items[i]);
        else
            par_strvec_push_owned(&e, env.items[i]);
        env.items[i] = NULL;
    }
    par_envlist_free(&env);
    for (size_t i = 0; spec->exec_env && spec->exec_env[i]; i++)
        env_set(&e, spec->exec_env[i]);
    *out = par_strvec_steal(&e);
    return *out ? PAR_OK : PAR_E_NO_MEMORY;
}

void par_spawn_remove_tree(const char *path)
{
    par_fs_result_t res;
    if (par_fs_remove(path, &res) != 0)
        par_log_msg(PAR_LOG_WARN, "cannot remove %s completely: %llu entries failed, first: %s",
                    path, (unsigned long long)res.failures, strerror(res.first_errno));
}

char *par_spawn_scratch(const char *base, const char *name, const char *version, uint64_t wid,
                        long uid, long gid)
{
    char *dir = NULL;
    if (base == NULL ||
        asprintf(&dir, "%s/%s@%s.%llu", base, name, version, (unsigned long long)wid) < 0)
        return NULL;
    par_spawn_remove_tree(dir); /* a leftover of an earlier runtime with the same numbering */
    if (mkdir(dir, 0700) != 0 || (uid >= 0 && chown(dir, (uid_t)uid, (gid_t)gid) != 0)) {
        par_log_msg(PAR_LOG_ERROR, "cannot create the worker scratch directory %s: %s", dir,
                    strerror(errno));
        rmdir(dir);
        free(dir);
        return NULL;
    }
    return dir;
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* Its own process group (whatever it leaves behind is killed with it); the
 * runtime's blocked signals (SIGTERM, SIGINT, SIGHUP are taken by its signal
 * thread) are not the worker's. */
static int spawn_with(char *const *argv, char *const *envp, int sock, int out, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out, 1);
    posix_spawn_file_actions_adddup2(&fa, out, 2);
    posix_spawn_file_actions_adddup2(&fa, sock, 3);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none, defaults;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    int rc = posix_spawn(pid, argv[0], &fa, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

int par_spawn_process(char *const *argv, char *const *envp, const char *scratch, pid_t *pid,
                      int *sock, int *out_fd)
{
    int sv[2] = {-1, -1}, pp[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || pipe2(pp, O_CLOEXEC) != 0) {
        par_log_msg(PAR_LOG_ERROR, "cannot create worker channel: %s", strerror(errno));
        close_fds(sv, 2), close_fds(pp, 2);
        return -1;
    }
    size_t argc = 0;
    while (argv[argc])
        argc++;
    char **full = calloc(argc + 3, sizeof(char *));
    int rc = ENOMEM;
    if (full) {
        /* right after the program name: a trailing --exec PROG must stay last */
        full[0] = argv[0];
        full[1] = (char *)"--scratch";
        full[2] = (char *)scratch;
        memcpy(full + 3, argv + 1, argc * sizeof(char *));
        rc = spawn_with(full, envp, sv[1], pp[1], pid);
        free(full);
    }
    close(sv[1]);
    close(pp[1]);
    if (rc != 0) {
        close(sv[0]);
        close(pp[0]);
        return rc;
    }
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(pp[0], F_SETFL, O_NONBLOCK);
    *sock = sv[0];
    *out_fd = pp[0];
    return 0;
}

void par_spawn_kill(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
}
