/*
 * Embedding PAR in a host program: no HTTP, just par_call().
 *
 *   par-embed-example PACKAGE.apkg [STATE_DIR]
 *
 * Deploys the echo example package, calls the public `echo` agent and the
 * private `echo/upper` sub-agent (an embedder is trusted, so private agents
 * are reachable), and prints both outputs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PACKAGE.apkg [STATE_DIR]\n", argv[0]);
        return 2;
    }
    par_config_t cfg;
    par_config_init(&cfg);
    cfg.state_dir = argc > 2 ? argv[2] : "./var";
    /* The example deploys the unsigned package it was built with. A host that
     * takes packages from elsewhere lists its keys in cfg.trusted_keys and
     * leaves this at 0, so that unsigned packages are refused. */
    cfg.allow_unsigned = 1;

    par_runtime_t *rt;
    int rc = par_runtime_new(&cfg, &rt);
    if (rc != PAR_OK) {
        fprintf(stderr, "par_runtime_new: %s\n", par_strerror(rc));
        return 1;
    }
    char *err = NULL;
    rc = par_runtime_deploy_path(rt, argv[1], &err);
    if (rc != PAR_OK) {
        fprintf(stderr, "deploy %s: %s\n%s", argv[1], par_strerror(rc), err ? err : "");
        free(err);
        par_runtime_destroy(rt);
        return 1;
    }

    static const char input[] = "{\"text\":\"hello from the host\"}";
    const char *ids[] = {"echo", "echo/upper"};
    int failures = 0;
    for (size_t i = 0; i < 2; i++) {
        par_result_t out;
        rc = par_call(rt, ids[i], input, strlen(input), &out);
        printf("%s -> %s %.*s\n", ids[i], par_status_name(rc), (int)out.len, out.data);
        failures += rc != PAR_OK;
        par_result_free(&out);
    }
    par_runtime_destroy(rt);
    return failures ? 1 : 0;
}
