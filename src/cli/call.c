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
               "in a worker process.\n");
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
    par_log_init(PAR_LOG_ERROR, 1); /* stdout is the output; stderr only errors */
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
        free(err);
        exit_code = 1;
    } else {
        par_result_t out;
        rc = par_call(rt, argv[2], input.data ? input.data : "", input.len, &out);
        if (rc == PAR_OK) {
            fwrite(out.data, 1, out.len, stdout);
            fputc('\n', stdout);
        } else {
            fprintf(stderr, "%.*s\n", (int)out.len, out.data);
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
