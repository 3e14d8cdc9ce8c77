/*
 * plugins/node/node_loader.c — the Node.js loader plugin (docs/node-agents.md).
 *
 * Owns the `runtime: node18` and `runtime: node20` packages: it checks them
 * at deploy (the interpreter is there and new enough, every entrypoint
 * `path/module:function` names a file of the package and a JavaScript name,
 * dependencies are shipped in node_modules) and gives the worker command:
 *
 *     node --openssl-config=/dev/null [--max-old-space-size=N] worker.js
 *
 * which par-worker execs inside its sandbox, followed by the standard worker
 * arguments (--fd 3 --root ... --export NAME=ENTRY ...). worker.js
 * (node/worker.js beside this shared object) speaks the worker protocol.
 *
 * Called by the runtime's plugin host (include/par/plugin.h): init and fini
 * on the main thread, validate and command on deploy threads, one at a time.
 * It runs in the runtime process: it must never run package code, never
 * write into a package, and never block longer than the version probe of
 * the interpreter (PROBE_TIMEOUT_MS, once per configured interpreter).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <par/plugin.h>

#define PROBE_TIMEOUT_MS 10000
#define MIN_MAJOR 18
/* V8's heap gets this share of the package's memory limit; the rest is for
 * code, thread stacks and Buffers (which live outside the heap). */
#define HEAP_PERCENT 75
#define MIN_HEAP_MB 16

static const char *const RUNTIMES[] = {"node18", "node20", NULL};
/* What `path/module` may name, in this order (Node's own resolution of a
 * relative path without an extension, plus ES modules). */
static const char *const SUFFIXES[] = {"",          ".js",        ".mjs",       ".cjs",
                                       "/index.js", "/index.mjs", "/index.cjs", NULL};

typedef struct node_state {
    const par_plugin_host_t *host;
    char node[PATH_MAX];   /* the interpreter, absolute (as found or configured) */
    char real[PATH_MAX];   /* its real path (symlinks resolved) */
    char worker[PATH_MAX]; /* worker.js */
    char worker_dir[PATH_MAX];
    int major, minor, patch; /* 0: not probed yet (or it failed) */
    char probe_error[PATH_MAX + 512];
} node_state_t;

/* ---- helpers ------------------------------------------------------------------------------- */

static void sayf(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Appends one line to err[cap] (truncated when full). */
static void sayf(char *err, size_t cap, const char *fmt, ...)
{
    size_t used = strnlen(err, cap);
    if (used + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err + used, cap - used, fmt, ap);
    va_end(ap);
    if (n >= 0 && used + (size_t)n + 1 < cap) {
        err[used + (size_t)n] = '\n';
        err[used + (size_t)n + 1] = '\0';
    }
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void logf_(const node_state_t *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(const node_state_t *s, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    s->host->log(s->host, level, msg);
}

/* ---- the interpreter ----------------------------------------------------------------------- */

/* The first of `node`, `nodejs` on the runtime's PATH (Debian installs both
 * names), else /usr/bin/node. */
static void find_node(char *out, size_t cap)
{
    const char *path = getenv("PATH");
    static const char *const names[] = {"node", "nodejs"};
    for (size_t n = 0; n < 2; n++) {
        const char *p = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
        while (*p) {
            size_t l = strcspn(p, ":");
            if (l > 0 && p[0] == '/') {
                snprintf(out, cap, "%.*s/%s", (int)l, p, names[n]);
                if (access(out, X_OK) == 0 && is_file(out))
                    return;
            }
            p += l + (p[l] == ':');
        }
    }
    snprintf(out, cap, "/usr/bin/node");
}

/* Runs `node --version` (at most PROBE_TIMEOUT_MS) into out[cap]. 0 on
 * success (exit status 0). */
static int run_version(const char *node, char *out, size_t cap)
{
    int pp[2];
    if (pipe2(pp, O_CLOEXEC) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pp[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pp[1], 2);
    char *const argv[] = {(char *)node, (char *)"--version", NULL};
    char *const envp[] = {(char *)"PATH=/usr/local/bin:/usr/bin:/bin", (char *)"LANG=C.UTF-8",
                          NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, node, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    close(pp[1]);
    if (rc != 0) {
        close(pp[0]);
        errno = rc;
        return -1;
    }
    size_t len = 0;
    struct pollfd pfd = {.fd = pp[0], .events = POLLIN};
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = PROBE_TIMEOUT_MS -
                    ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        ssize_t n = read(pp[0], out + len, cap - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len + 1 >= cap)
            break;
    }
    out[len] = '\0';
    close(pp[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Learns the interpreter's version, once (again after a failure: Node may
 * have been installed since). 0 when known. */
static int probe(node_state_t *s)
{
    if (s->major > 0)
        return 0;
    char out[256] = "";
    s->probe_error[0] = '\0';
    if (access(s->node, X_OK) != 0) {
        snprintf(s->probe_error, sizeof(s->probe_error),
                 "the Node.js interpreter %s is not available: %s (Debian: apt-get install "
                 "nodejs; or the plugin's config `node:`)",
                 s->node, strerror(errno));
        return -1;
    }
    if (run_version(s->node, out, sizeof(out)) != 0 ||
        sscanf(out, "v%d.%d.%d", &s->major, &s->minor, &s->patch) != 3) {
        out[strcspn(out, "\n")] = '\0';
        snprintf(s->probe_error, sizeof(s->probe_error),
                 "the Node.js interpreter %s does not run (%.200s)", s->node,
                 *out ? out : strerror(errno));
        s->major = 0;
        return -1;
    }
    if (realpath(s->node, s->real) == NULL)
        snprintf(s->real, sizeof(s->real), "%s", s->node);
    logf_(s, PAR_LOG_INFO, "Node.js %d.%d.%d at %s", s->major, s->minor, s->patch, s->node);
    return 0;
}

/* ---- init ---------------------------------------------------------------------------------- */

/* Reads the plugin's `config:` (node, worker). */
static int read_config(node_state_t *s, char *err, size_t cap)
{
    json_error_t je;
    json_t *cfg = json_loads(s->host->config(s->host, NULL), 0, &je);
    if (!json_is_object(cfg)) {
        snprintf(err, cap, "config: not an object (%s)", je.text);
        json_decref(cfg);
        return -1;
    }
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(cfg, key, v)
    {
        char *dst = strcmp(key, "node") == 0     ? s->node
                    : strcmp(key, "worker") == 0 ? s->worker
                                                 : NULL;
        if (dst == NULL) {
            snprintf(err, cap, "config.%s: unknown key (known: node, worker)", key);
            rc = -1;
        } else if (!json_is_string(v) || json_string_value(v)[0] != '/') {
            snprintf(err, cap, "config.%s: must be an absolute path", key);
            rc = -1;
        } else {
            snprintf(dst, PATH_MAX, "%s", json_string_value(v));
        }
        if (rc)
            break;
    }
    json_decref(cfg);
    return rc;
}

static int node_init(const par_plugin_host_t *host, void **state, char *err, size_t cap)
{
    node_state_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, cap, "out of memory");
        return PAR_E_NO_MEMORY;
    }
    s->host = host;
    if (read_config(s, err, cap) != 0) {
        free(s);
        return PAR_E_INVALID_ARGUMENT;
    }
    if (s->node[0] == '\0')
        find_node(s->node, sizeof(s->node));
    if (s->worker[0] == '\0') { /* installed beside the shared object: node/worker.js */
        const char *so = host->plugin_path(host);
        const char *slash = strrchr(so, '/');
        snprintf(s->worker, sizeof(s->worker), "%.*s/node/worker.js", slash ? (int)(slash - so) : 1,
                 slash ? so : ".");
    }
    snprintf(s->worker_dir, sizeof(s->worker_dir), "%s", s->worker);
    char *slash = strrchr(s->worker_dir, '/');
    if (slash && slash != s->worker_dir)
        *slash = '\0';
    if (!is_file(s->worker)) {
        snprintf(err, cap, "the Node.js worker %s is missing (config.worker)", s->worker);
        free(s);
        return PAR_E_INVALID_ARGUMENT;
    }
    /* a missing interpreter is not fatal: node packages are refused at deploy */
    if (probe(s) != 0)
        logf_(s, PAR_LOG_WARN, "%s; node18/node20 packages are refused until it is",
              s->probe_error);
    *state = s;
    return 0;
}

static void node_fini(void *state)
{
    free(state);
}

/* ---- validate ------------------------------------------------------------------------------ */

/* A dotted JavaScript name: identifiers of [A-Za-z_$][A-Za-z0-9_$]* (ASCII). */
static int js_name(const char *s)
{
    int start = 1;
    if (*s == '\0')
        return 0;
    for (; *s; s++) {
        char c = *s;
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
        if (c == '.') {
            if (start)
                return 0;
            start = 1;
        } else if (alpha || (!start && c >= '0' && c <= '9')) {
            start = 0;
        } else {
            return 0;
        }
    }
    return !start;
}

/* Is `mod` (a relative path, no '..') a file of the package? */
static int module_file(const char *root, const char *mod, size_t len)
{
    char path[PATH_MAX];
    for (size_t i = 0; SUFFIXES[i]; i++) {
        if (snprintf(path, sizeof(path), "%s/%.*s%s", root, (int)len, mod, SUFFIXES[i]) <
                (int)sizeof(path) &&
            is_file(path))
            return 1;
    }
    return 0;
}

/* One export: `path/module:function`. Returns the problems found. */
static int check_export(const par_loader_pkg_t *pkg, const par_loader_export_t *x, char *err,
                        size_t cap)
{
    char field[160];
    if (x->name[0])
        snprintf(field, sizeof(field), "metadata.sub_agents[%s].entrypoint", x->name);
    else
        snprintf(field, sizeof(field), "entrypoint");
    const char *e = x->entrypoint, *colon = strrchr(e, ':');
    if (colon == NULL || colon == e || colon[1] == '\0') {
        sayf(err, cap, "%s: '%s' must be path/module:function (src/main:handler)", field, e);
        return 1;
    }
    size_t len = (size_t)(colon - e);
    int dotdot = 0;
    for (const char *p = e; p + 1 < colon; p++)
        if (p[0] == '.' && p[1] == '.' && (p == e || p[-1] == '/') &&
            (p + 2 == colon || p[2] == '/'))
            dotdot = 1;
    int problems = 0;
    if (e[0] == '/' || dotdot || memchr(e, '\\', len)) {
        sayf(err, cap, "%s: '%.*s' must be a path relative to the package root, without '..'",
             field, (int)len, e);
        problems++;
    } else if (!module_file(pkg->root, e, len)) {
        sayf(err, cap,
             "%s: the package has no module %.*s (%.*s.js, %.*s.mjs, %.*s.cjs or "
             "%.*s/index.js)",
             field, (int)len, e, (int)len, e, (int)len, e, (int)len, e, (int)len, e);
        problems++;
    }
    if (!js_name(colon + 1)) {
        sayf(err, cap, "%s: '%.80s' is not a JavaScript function name", field, colon + 1);
        problems++;
    }
    return problems;
}

/* agent.yaml `dependencies`: PAR installs nothing for Node packages; they
 * must come in the package's node_modules. */
static int check_deps(const par_loader_pkg_t *pkg, char *err, size_t cap)
{
    if (pkg->dependencies == NULL || pkg->dependencies[0] == NULL)
        return 0;
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s/node_modules", pkg->root);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    sayf(err, cap,
         "dependencies: the package requires '%.100s'%s and has no node_modules directory: "
         "PAR installs nothing for Node.js packages (run npm install before packing)",
         pkg->dependencies[0], pkg->dependencies[1] ? " and more" : "");
    return 1;
}

static int node_validate(void *state, const par_loader_pkg_t *pkg, char *err, size_t cap)
{
    node_state_t *s = state;
    int problems = 0;
    err[0] = '\0';
    int want = 0;
    sscanf(pkg->runtime, "node%d", &want);
    if (probe(s) != 0) {
        sayf(err, cap, "runtime: %s", s->probe_error);
        problems++;
    } else if (s->major < MIN_MAJOR || s->major < want) {
        sayf(err, cap, "runtime: %s needs Node.js %d or newer; the interpreter %s is %d.%d.%d",
             pkg->runtime, want > MIN_MAJOR ? want : MIN_MAJOR, s->node, s->major, s->minor,
             s->patch);
        problems++;
    }
    if (!is_file(s->worker)) {
        sayf(err, cap, "runtime: the Node.js worker %s is missing", s->worker);
        problems++;
    }
    for (size_t i = 0; i < pkg->export_count; i++)
        problems += check_export(pkg, &pkg->exports[i], err, cap);
    problems += check_deps(pkg, err, cap);
    return problems ? PAR_E_INCOMPATIBLE : 0;
}

/* ---- the worker command -------------------------------------------------------------------- */

/* The directory above bin/ of an interpreter installed outside /usr
 * (/opt/node-v20/bin/node: /opt/node-v20, its lib/ included). */
static int prefix_of(const char *real, char *out, size_t cap)
{
    if (strncmp(real, "/usr/", 5) == 0)
        return 0;
    snprintf(out, cap, "%s", real);
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(out, '/');
        if (slash == NULL || slash == out)
            return 0;
        *slash = '\0';
    }
    return 1;
}

static int node_command(void *state, const par_loader_pkg_t *pkg, par_loader_cmd_t *cmd, char *err,
                        size_t cap)
{
    node_state_t *s = state;
    const par_plugin_host_t *h = s->host;
    if (probe(s) != 0) {
        snprintf(err, cap, "%s", s->probe_error);
        return PAR_E_INCOMPATIBLE;
    }
    char arg[64], prefix[PATH_MAX];
    int rc = h->cmd_arg(cmd, s->node);
    /* the system's OpenSSL configuration is outside the sandbox: Node's defaults */
    rc = rc ? rc : h->cmd_arg(cmd, "--openssl-config=/dev/null");
    if (rc == 0 && pkg->memory_mb) {
        /* V8 reserves far more address space than it uses: it cannot start
         * under RLIMIT_AS; its heap limit stands in for it */
        unsigned heap = pkg->memory_mb * HEAP_PERCENT / 100;
        snprintf(arg, sizeof(arg), "--max-old-space-size=%u",
                 heap < MIN_HEAP_MB ? MIN_HEAP_MB : heap);
        rc = h->cmd_arg(cmd, arg);
        rc = rc ? rc : h->cmd_flag(cmd, PAR_LOADER_CMD_OWN_MEMORY_LIMIT);
    }
    rc = rc ? rc : h->cmd_arg(cmd, s->worker);
    if (rc == 0 && pkg->memory_mb) { /* the worker watches the whole process */
        snprintf(arg, sizeof(arg), "%u", pkg->memory_mb);
        rc = h->cmd_arg(cmd, "--memory-mb");
        rc = rc ? rc : h->cmd_arg(cmd, arg);
    }
    rc = rc ? rc : h->cmd_ro(cmd, s->worker_dir);
    if (rc == 0 && prefix_of(s->real, prefix, sizeof(prefix)))
        rc = h->cmd_ro(cmd, prefix);
    /* the package's environment must not change how the interpreter runs
     * (NODE_OPTIONS=--require ..., a heap limit of its own) */
    rc = rc ? rc : h->cmd_env(cmd, "NODE_OPTIONS=");
    rc = rc ? rc : h->cmd_env(cmd, "UV_USE_IO_URING=0"); /* refused by the seccomp filter */
    if (rc)
        snprintf(err, cap, "cannot build the worker command: %s",
                 rc == PAR_E_NO_MEMORY ? "out of memory" : "invalid argument");
    return rc;
}

/* ---- the plugin ---------------------------------------------------------------------------- */

static const par_loader_ops_t LOADER = {
    .size = sizeof(par_loader_ops_t),
    .runtimes = RUNTIMES,
    .validate = node_validate,
    .prepare = NULL,
    .command = node_command,
    .release = NULL,
};

static const par_plugin_t PLUGIN = {
    .abi = PAR_PLUGIN_ABI,
    .size = sizeof(par_plugin_t),
    .name = "node",
    .version = "1.0.0",
    .init = node_init,
    .fini = node_fini,
    .loader = &LOADER,
};

__attribute__((visibility("default"))) const par_plugin_t *par_plugin_entry(void);

const par_plugin_t *par_plugin_entry(void)
{
    return &PLUGIN;
}
