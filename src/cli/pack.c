/*
 * cli/pack.c — `par pack` (build a deterministic .apkg from a directory) and
 * `par inspect` (show a package's manifest, exports and digest; runs no code).
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

#include "cli/cli.h"
#include "pkg/archive.h"
#include "pkg/manifest.h"
#include "util/buf.h"

static void usage_pack(FILE *f)
{
    fprintf(f, "usage: par pack DIR -o FILE.apkg [--sign [-s par.key] [--password-file F]\n"
               "                                [-t \"trusted comment\"]]\n\n"
               "Builds a ZIP package from DIR (which must hold agent.yaml). The manifest is\n"
               "validated first. Same input, same bytes: entries are sorted, timestamps and\n"
               "owners fixed. --sign then writes FILE.apkg.minisig with a minisign secret key\n"
               "(as `par sign` does).\n");
}

static void usage_inspect(FILE *f)
{
    fprintf(f, "usage: par inspect FILE.apkg\n\n"
               "Prints the package's manifest, exports and SHA-256 as JSON. Runs no code.\n");
}

int par_cli_pack(int argc, char **argv)
{
    if (par_cli_wants_help(argc, argv)) {
        usage_pack(stdout);
        return 0;
    }
    const char *dir = NULL, *outp = NULL, *seckey = NULL, *pwfile = NULL, *comment = NULL;
    int sign = 0;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc)
            outp = argv[++i];
        else if (strcmp(argv[i], "--sign") == 0)
            sign = 1;
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            seckey = argv[++i];
        else if (strcmp(argv[i], "--password-file") == 0 && i + 1 < argc)
            pwfile = argv[++i];
        else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            comment = argv[++i];
        else if (dir == NULL && argv[i][0] != '-')
            dir = argv[i];
        else {
            usage_pack(stderr);
            return 2;
        }
    }
    if (dir == NULL || outp == NULL) {
        usage_pack(stderr);
        return 2;
    }
    char ypath[PATH_MAX];
    snprintf(ypath, sizeof(ypath), "%s/agent.yaml", dir);
    FILE *f = fopen(ypath, "rb");
    if (f == NULL) {
        fprintf(stderr, "par pack: %s: %s\n", ypath, strerror(errno));
        return 1;
    }
    par_buf_t y, err;
    par_buf_init(&y, PAR_MANIFEST_MAX_BYTES);
    par_buf_init(&err, 0);
    char buf[8192];
    size_t r;
    while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
        if (par_buf_append(&y, buf, r) != PAR_OK)
            break;
    fclose(f);
    par_manifest_t *m = NULL;
    int rc = par_manifest_parse(y.data ? y.data : "", y.len, &m, &err);
    par_buf_free(&y);
    if (rc != PAR_OK) {
        fprintf(stderr, "par pack: invalid manifest:\n%.*s", (int)err.len, err.data);
        par_buf_free(&err);
        return 1;
    }
    for (size_t i = 0; i < m->warnings.count; i++)
        fprintf(stderr, "par pack: warning: %s\n", m->warnings.items[i]);
    par_manifest_free(m);
    rc = par_archive_pack(dir, outp, &err);
    if (rc != PAR_OK) {
        fprintf(stderr, "par pack: %.*s", (int)err.len, err.data ? err.data : "");
        par_buf_free(&err);
        return 1;
    }
    par_buf_free(&err);
    if (sign || seckey)
        return par_cli_sign_file(outp, seckey, pwfile, comment, 0);
    return 0;
}

int par_cli_inspect(int argc, char **argv)
{
    if (par_cli_wants_help(argc, argv) || argc != 2) {
        usage_inspect(argc == 2 ? stdout : stderr);
        return argc == 2 ? 0 : 2;
    }
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    par_archive_bytes_t a = {0};
    par_buf_t err, y;
    par_buf_init(&err, 0);
    par_buf_init(&y, 0);
    par_manifest_t *m = NULL;
    int rc = par_archive_load(argv[1], &lim, &a, &err);
    if (rc == PAR_OK)
        rc = par_archive_read_member(&a, "agent.yaml", PAR_MANIFEST_MAX_BYTES, &y, &err);
    if (rc == PAR_OK)
        rc = par_manifest_parse(y.data ? y.data : "", y.len, &m, &err);
    if (rc != PAR_OK) {
        fprintf(stderr, "par inspect: %s: %s\n%.*s", argv[1], par_strerror(rc), (int)err.len,
                err.data ? err.data : "");
        par_buf_free(&err);
        par_buf_free(&y);
        par_archive_bytes_free(&a);
        return 1;
    }
    json_t *ex = json_array();
    for (size_t i = 0; i < m->export_count; i++) {
        const par_export_t *e = &m->exports[i];
        char id[300];
        snprintf(id, sizeof(id), "%s%s%s", m->name, e->name[0] ? "/" : "", e->name);
        json_array_append_new(ex, json_pack("{s:s, s:s, s:b, s:s, s:s}", "id", id, "name", e->name,
                                            "public", e->is_public, "entrypoint", e->entrypoint,
                                            "description", e->description));
    }
    json_t *warn = json_array();
    for (size_t i = 0; i < m->warnings.count; i++)
        json_array_append_new(warn, json_string(m->warnings.items[i]));
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:o}", "name", m->name,
                          "version", m->package_version, "display_name", m->display_name,
                          "description", m->description, "runtime", m->runtime, "entrypoint",
                          m->entrypoint ? m->entrypoint : "", "sha256", a.sha256, "size",
                          (json_int_t)a.len, "exports", ex, "warnings", warn);
    if (m->par_requires)
        json_object_set_new(o, "requires", json_string(m->par_requires));
    if (m->par_abi >= 0)
        json_object_set_new(o, "abi", json_integer(m->par_abi));
    /* what a deploy would write: the same reader, through the same checks */
    json_t *entries = NULL;
    rc = par_archive_list(&a, &lim, &entries, &err);
    if (rc != PAR_OK) {
        fprintf(stderr, "par inspect: %s: %s\n%.*s", argv[1], par_strerror(rc), (int)err.len,
                err.data ? err.data : "");
        json_decref(o);
        par_manifest_free(m);
        par_buf_free(&err);
        par_buf_free(&y);
        par_archive_bytes_free(&a);
        return 1;
    }
    json_object_set_new(o, "entries", entries);
    char *s = json_dumps(o, JSON_INDENT(2));
    printf("%s\n", s);
    free(s);
    json_decref(o);
    par_manifest_free(m);
    par_buf_free(&err);
    par_buf_free(&y);
    par_archive_bytes_free(&a);
    return 0;
}
