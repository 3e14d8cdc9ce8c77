/*
 * worker/main.c — par-worker, the native worker host: its arguments, the
 * sandbox, loading the package's code and HELLO.
 *
 * Spawned by the runtime's supervisor (loader/supervisor.c), one process per
 * worker of a native package version. It loads the package's shared objects,
 * resolves every export, says HELLO, then serves INVOKE frames on a socket
 * (docs/worker-protocol.md) until the socket closes (worker/reader.c; the
 * other files are listed in worker/worker.h).
 *
 *   par-worker --fd N --root DIR [--max-input BYTES] [--max-output BYTES]
 *              [--max-event BYTES] [sandbox options] --export NAME=path/lib.so:symbol [--export …]
 *   par-worker --fd N --root DIR [sandbox options] --exec PROG [ARGS…]
 *
 * Before it loads any agent code it puts itself in the sandbox
 * (sandbox/sandbox.h); with --exec it then execs PROG, which inherits the
 * sandbox and descriptors 0-3 and speaks the protocol itself.
 *
 * Threads: main() alone until worker_serve() starts the job queue.
 * It must never trust the runtime's input beyond the protocol's caps, and it
 * exits when the runtime goes away (PR_SET_PDEATHSIG and EOF).
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "core/proto.h"
#include "sandbox/sandbox.h"
#include "worker/worker.h"

#define MAX_RO 64

int g_fd = -1;
size_t g_max_input = 64u << 20;
size_t g_max_output = 16u << 20;
size_t g_max_event = 1u << 20;
wexport_t g_exports[MAX_EXPORTS];
size_t g_nexports;

/* ---- start-up ------------------------------------------------------------- */

static void load_exports(const char *root)
{
    for (size_t i = 0; i < g_nexports; i++) {
        wexport_t *e = &g_exports[i];
        char path[PATH_MAX];
        if (e->lib[0] == '/' || strstr(e->lib, ".."))
            worker_die("export '%s': library path '%s' must be relative to the package", e->name,
                       e->lib);
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", root, e->lib) >= sizeof(path))
            worker_die("export '%s': library path too long", e->name);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h == NULL)
            worker_die("%s: cannot load: %s", e->lib, dlerror());
        const unsigned *abi = dlsym(h, "par_agent_abi");
        if (abi && *abi != PAR_AGENT_ABI)
            worker_die("%s: built for agent ABI %u, this runtime speaks %d", e->lib, *abi,
                       PAR_AGENT_ABI);
        void *sym = dlsym(h, e->symbol);
        if (sym == NULL)
            worker_die("%s: symbol '%s' not found (export '%s')", e->lib, e->symbol,
                       e->name[0] ? e->name : "main");
        *(void **)&e->fn = sym;
        /* init once per library: the first export that names it */
        int first = 1;
        for (size_t k = 0; k < i; k++)
            if (strcmp(g_exports[k].lib, e->lib) == 0)
                first = 0;
        if (first) {
            int (*init)(void);
            *(void **)&init = dlsym(h, "par_agent_init");
            if (init && init() != 0)
                worker_die("%s: par_agent_init failed", e->lib);
        }
    }
}

static void parse_export(const char *arg)
{
    if (g_nexports == MAX_EXPORTS)
        worker_die("too many exports");
    const char *eq = strchr(arg, '=');
    const char *colon = eq ? strrchr(eq, ':') : NULL;
    if (eq == NULL || colon == NULL || colon == eq + 1 || colon[1] == '\0')
        worker_die("bad --export '%s' (want NAME=lib.so:symbol)", arg);
    wexport_t *e = &g_exports[g_nexports++];
    e->name = strndup(arg, (size_t)(eq - arg));
    e->lib = strndup(eq + 1, (size_t)(colon - eq - 1));
    e->symbol = strdup(colon + 1);
    if (e->name == NULL || e->lib == NULL || e->symbol == NULL)
        worker_die("out of memory");
}

static unsigned long parse_ulong(const char *opt, const char *v)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || *end || *v == '\0' || *v == '-')
        worker_die("%s: '%s' is not a number", opt, v);
    return n;
}

typedef struct args {
    const char *root;
    char **exec_argv;
    const char *ro[MAX_RO];
    par_sandbox_opts_t sb;
} args_t;

/* 0, or 2 after saying what was wrong with an argument. */
static int parse_args(int argc, char **argv, args_t *a)
{
    par_sandbox_opts_t *sb = &a->sb;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--fd") == 0 && v) {
            g_fd = atoi(v), i++;
        } else if (strcmp(o, "--root") == 0 && v) {
            a->root = v, i++;
        } else if (strcmp(o, "--max-input") == 0 && v) {
            g_max_input = strtoull(v, NULL, 10), i++;
        } else if (strcmp(o, "--cpu-seconds") == 0 && v) {
            sb->cpu_seconds = parse_ulong(o, v), i++;
        } else if (strcmp(o, "--file-size-mb") == 0 && v) {
            sb->file_mb = parse_ulong(o, v), i++;
        } else if (strcmp(o, "--memory-mb") == 0 && v) {
            sb->memory_mb = parse_ulong(o, v), i++;
        } else if (strcmp(o, "--max-files") == 0 && v) {
            sb->max_files = parse_ulong(o, v), i++;
        } else if (strcmp(o, "--max-processes") == 0 && v) {
            sb->max_procs = parse_ulong(o, v), i++;
        } else if (strcmp(o, "--uid") == 0 && v) {
            sb->uid = (long)parse_ulong(o, v), i++;
        } else if (strcmp(o, "--gid") == 0 && v) {
            sb->gid = (long)parse_ulong(o, v), i++;
        } else if (strcmp(o, "--scratch") == 0 && v) {
            sb->scratch = v, i++;
        } else if (strcmp(o, "--ro") == 0 && v) {
            if (sb->ro_count == MAX_RO)
                worker_die("too many --ro paths (at most %d)", MAX_RO);
            a->ro[sb->ro_count++] = v, i++;
        } else if (strcmp(o, "--network") == 0) {
            sb->network = 1;
        } else if (strcmp(o, "--subprocess") == 0) {
            sb->subprocess = 1;
        } else if (strcmp(o, "--max-output") == 0 && v) {
            g_max_output = strtoull(v, NULL, 10), i++;
        } else if (strcmp(o, "--max-event") == 0 && v) {
            g_max_event = parse_ulong(o, v), i++;
        } else if (strcmp(o, "--export") == 0 && v) {
            parse_export(v), i++;
        } else if (strcmp(o, "--exec") == 0 && v) {
            a->exec_argv = argv + i + 1; /* the rest is the program and its arguments */
            break;
        } else {
            fprintf(stderr,
                    "par-worker: unknown argument '%s'\n"
                    "par-worker is started by the par runtime, not by hand.\n",
                    o);
            return 2;
        }
    }
    return 0;
}

/* Nothing of the runtime's may leak into package code: keep 0-2 and the
 * protocol socket (moved to 3), close every other inherited descriptor. */
static void own_descriptors(void)
{
    if (g_fd != 3) {
        if (dup2(g_fd, 3) < 0)
            worker_die("cannot move the protocol socket to fd 3: %s", strerror(errno));
        g_fd = 3;
    }
    if (close_range(4, ~0U, 0) != 0)
        for (int fd = 4; fd < 1024; fd++)
            close(fd);
}

/* Absolute paths for the sandbox's rules: the root, the scratch directory
 * (TMPDIR and HOME too) and the program to exec. */
static void resolve_paths(args_t *a, char *root_abs, char *scratch_abs, char *exec_abs)
{
    par_sandbox_opts_t *sb = &a->sb;
    if (realpath(a->root, root_abs) == NULL)
        worker_die("package directory %s: %s", a->root, strerror(errno));
    sb->root = root_abs;
    if (sb->scratch) {
        if (realpath(sb->scratch, scratch_abs) == NULL)
            worker_die("scratch directory %s: %s", sb->scratch, strerror(errno));
        sb->scratch = scratch_abs;
        /* temporary files and a home for libraries that want one */
        setenv("TMPDIR", scratch_abs, 1);
        setenv("HOME", scratch_abs, 1);
    }
    if (a->exec_argv) {
        if (a->exec_argv[0] == NULL || a->exec_argv[0][0] != '/')
            worker_die("--exec needs an absolute program path");
        if (realpath(a->exec_argv[0], exec_abs) == NULL)
            worker_die("--exec %s: %s", a->exec_argv[0], strerror(errno));
        sb->exec_path = exec_abs;
    }
}

/* The sandbox, before any package code is loaded; its report (owned). */
static json_t *enter_sandbox(par_sandbox_opts_t *sb)
{
    json_t *report = NULL;
    par_buf_t sberr;
    par_buf_init(&sberr, 4096);
    if (par_sandbox_apply(sb, &report, &sberr) != PAR_OK) {
        par_buf_terminate(&sberr);
        worker_die("sandbox: %s", sberr.data ? sberr.data : "failed");
    }
    par_buf_free(&sberr);
    return report;
}

/* Execs the --exec program with the sandbox's report in PAR_SANDBOX. */
static void __attribute__((noreturn)) exec_program(char **exec_argv, json_t *report)
{
    char *js = json_dumps(report, JSON_COMPACT);
    if (js == NULL || setenv("PAR_SANDBOX", js, 1) != 0)
        worker_die("out of memory");
    free(js);
    json_decref(report);
    /* by the name given, not the resolved one: a virtual environment's
     * python finds its pyvenv.cfg next to the link it was started as */
    execv(exec_argv[0], exec_argv);
    worker_die("cannot exec %s: %s", exec_argv[0], strerror(errno));
}

/* HELLO: the protocol version, the exports and the sandbox (takes `report`). */
static void say_hello(json_t *report)
{
    json_t *names = json_array();
    if (names == NULL)
        worker_die("out of memory");
    for (size_t i = 0; i < g_nexports; i++)
        if (json_array_append_new(names, json_string(g_exports[i].name)) != 0)
            worker_die("out of memory");
    json_t *hello = json_pack("{s:i, s:s, s:i, s:o, s:o}", "protocol", PAR_PROTO_VERSION, "runtime",
                              "native", "pid", (int)getpid(), "exports", names, "sandbox", report);
    if (hello == NULL)
        worker_die("out of memory");
    worker_send_json(PAR_FRAME_HELLO, 0, hello, NULL, 0);
    json_decref(hello);
}

int main(int argc, char **argv)
{
    /* The runtime that started us. Not "is our parent init?": in a container
     * the runtime itself is PID 1. If it died before this line, getppid() is
     * already the reaper and the checks below miss it; the runtime's end of
     * the socket is closed then, and the first read ends the worker. */
    pid_t runtime = getppid();
    args_t a = {.root = NULL};
    a.sb = (par_sandbox_opts_t){.uid = -1, .gid = -1, .ro = a.ro};
    if (parse_args(argc, argv, &a) != 0)
        return 2;
    if (g_fd < 0 || a.root == NULL)
        worker_die("--fd and --root are required");
    if (a.exec_argv && g_nexports)
        worker_die("--exec and --export exclude each other");
    own_descriptors();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != runtime)
        return 0;
    signal(SIGPIPE, SIG_IGN);

    char root_abs[PATH_MAX], scratch_abs[PATH_MAX], exec_abs[PATH_MAX];
    resolve_paths(&a, root_abs, scratch_abs, exec_abs);
    json_t *report = enter_sandbox(&a.sb);
    /* a change of credentials clears the parent-death signal: set it again */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != runtime)
        return 0;
    if (chdir(root_abs) != 0)
        worker_die("package directory %s: %s", root_abs, strerror(errno));

    /* what was applied goes to the runtime first, from this process: a program
     * exec'd below could claim anything in its own HELLO */
    json_t *sbhdr = json_pack("{s:O}", "sandbox", report);
    worker_send_json(PAR_FRAME_SANDBOX, 0, sbhdr, NULL, 0);
    json_decref(sbhdr);
    if (a.exec_argv)
        exec_program(a.exec_argv, report);

    load_exports(root_abs);
    say_hello(report);
    worker_serve();
}
