/*
 * cli/call.c — `par call`: loads a package into a temporary runtime and calls
 * one of its agents once (a debugging aid).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include <par/par.h>

#include "cli/cli.h"
#include "obs/log.h"
#include "util/buf.h"
#include "util/fs.h"

static void usage_call(FILE *f)
{
    fprintf(f, "usage: par call FILE.apkg|DIR AGENT [JSON]\n\n"
               "Loads the package into a temporary runtime, calls AGENT (an id such as\n"
               "'echo' or 'echo/upper'; private sub-agents included) with JSON (default\n"
               "null, '-' reads standard input) and prints the output. A native package\n"
               "runs in-process (only use it with code you trust); a Python package runs\n"
               "in a worker process.\n\n"
               "A failure is printed for a person: the error, its message and, when a\n"
               "Python handler raised, its traceback as text. Set PAR_LOG_LEVEL (debug,\n"
               "info, warn, error) to see the runtime's log lines as well.\n");
}

/* A failed call, for a person: "par call: AGENT: name (status): message",
 * then the agent's traceback as text when it sent one. */
static void print_failure(const char *agent, int rc, const par_result_t *out)
{
    json_t *b = json_loadb(out->data ? out->data : "", out->len, 0, NULL);
    const char *msg = json_string_value(json_object_get(b, "message"));
    const char *tb = json_string_value(json_object_get(b, "traceback"));
    const char *rid = json_string_value(json_object_get(b, "request_id"));
    fprintf(stderr, "par call: %s: %s (%d): %s\n", agent, par_status_name(rc), par_status_http(rc),
            msg ? msg : par_strerror(rc));
    if (tb)
        fprintf(stderr, "%s%s", tb, tb[0] && tb[strlen(tb) - 1] == '\n' ? "" : "\n");
    if (rid)
        fprintf(stderr, "request id: %s\n", rid);
    json_decref(b);
}

int par_cli_call(int argc, char **argv)
{
    if (par_cli_wants_help(argc, argv)) {
        usage_call(stdout);
        return 0;
    }
    if (argc < 3 || argc > 4) {
        usage_call(stderr);
        return 2;
    }
    par_buf_t input;
    par_buf_init(&input, 64u << 20);
    if (argc == 4 && strcmp(argv[3], "-") != 0) {
        par_buf_appends(&input, argv[3]);
    } else if (argc == 4) {
        char buf[8192];
        size_t r;
        while ((r = fread(buf, 1, sizeof(buf), stdin)) > 0)
            par_buf_append(&input, buf, r);
    } else {
        par_buf_appends(&input, "null");
    }
    signal(SIGPIPE, SIG_IGN);
    /* stdout is the output; failures are printed below, once, for a person:
     * log lines only when asked for (they would repeat them as JSON) */
    const char *lv = getenv("PAR_LOG_LEVEL");
    int level = lv ? par_log_parse_level(lv) : -1;
    par_log_init(level >= 0 ? level : PAR_LOG_ERROR + 1, 0);
    char tmpl[] = "/tmp/par-call-XXXXXX";
    if (mkdtemp(tmpl) == NULL) {
        fprintf(stderr, "par call: cannot create a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    /* searchable, not readable: sandboxed workers (another uid when root) reach
     * the package cache below it */
    chmod(tmpl, 0711);
    par_config_t cfg;
    par_config_init(&cfg);
    cfg.state_dir = tmpl;
    cfg.isolation = PAR_ISOLATION_IN_PROCESS;
    cfg.allow_unsigned = 1; /* a local debugging aid: the operator points it at a file */
    par_runtime_t *rt;
    int rc = par_runtime_new(&cfg, &rt);
    if (rc != PAR_OK) {
        fprintf(stderr, "par call: %s\n", par_strerror(rc));
        par_fs_remove(tmpl, NULL);
        return 1;
    }
    char *err = NULL;
    rc = par_runtime_deploy_path(rt, argv[1], &err);
    int exit_code = 0;
    if (rc != PAR_OK) {
        fprintf(stderr, "par call: %s: %s (%s)\n%s", argv[1], par_strerror(rc), par_status_name(rc),
                err ? err : "");
        if (err && *err && err[strlen(err) - 1] != '\n')
            fputc('\n', stderr);
        free(err);
        exit_code = 1;
    } else {
        par_result_t out;
        rc = par_call(rt, argv[2], input.data ? input.data : "", input.len, &out);
        if (rc == PAR_OK) {
            fwrite(out.data, 1, out.len, stdout);
            fputc('\n', stdout);
        } else {
            print_failure(argv[2], rc, &out);
            exit_code = 1;
        }
        par_result_free(&out);
    }
    par_runtime_destroy(rt);
    par_log_shutdown();
    par_fs_remove(tmpl, NULL);
    par_buf_free(&input);
    return exit_code;
}
