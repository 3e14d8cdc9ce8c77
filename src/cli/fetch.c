/*
 * cli/fetch.c — `par fetch URL`: downloads a package the way the runtime
 * does (same fetcher, same digest and signature checks) into a local file.
 * Progress goes to stderr when stderr is a terminal; otherwise the command is
 * quiet except for errors and the final summary line.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <par/par.h>

#include "cli/cli.h"
#include "pkg/trust.h"
#include "registry/fetch.h"

static void usage_fetch(FILE *f)
{
    fprintf(f, "usage: par fetch URL [-o FILE] [--sha256 HEX] [--key KEY]\n"
               "                 [--ca-file PEM] [--s3-endpoint URL] [--s3-region R]\n"
               "                 [--s3-path-style] [--allow-http]\n\n"
               "Downloads a package from https:// or s3://bucket/key into FILE (default: the\n"
               "URL's last segment). The digest is checked against --sha256 or {URL}.sha256\n"
               "when either exists; with --key (a minisign public key or .pub file) the\n"
               "signature {URL}.minisig must verify and is saved as FILE.minisig.\n"
               "S3 credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and\n"
               "AWS_SESSION_TOKEN. Shows progress on a terminal.\n");
}

typedef struct progress {
    const char *name;
    double last;
    int shown;
} progress_t;

static void on_progress(void *ud, uint64_t now, uint64_t total)
{
    progress_t *p = ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (t - p->last < 0.1 && !(total && now == total))
        return;
    p->last = t;
    p->shown = 1;
    if (total)
        fprintf(stderr, "\rfetching %s: %.1f / %.1f MB (%3d%%)", p->name, (double)now / 1e6,
                (double)total / 1e6, (int)(now * 100 / total));
    else
        fprintf(stderr, "\rfetching %s: %.1f MB", p->name, (double)now / 1e6);
}

static int write_all(const char *path, const void *data, size_t len)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.part", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    const char *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int par_cli_fetch(int argc, char **argv)
{
    const char *url = NULL, *out = NULL, *sha = NULL, *key = NULL;
    par_fetch_opts_t o;
    par_fetch_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage_fetch(stdout);
            return 0;
        } else if (strcmp(a, "--s3-path-style") == 0) {
            o.s3_path_style = 1;
        } else if (strcmp(a, "--allow-http") == 0) {
            o.allow_http = 1;
        } else if (a[0] == '-' && v == NULL) {
            fprintf(stderr, "par fetch: %s needs a value (see par fetch --help)\n", a);
            return 2;
        } else if (strcmp(a, "-o") == 0) {
            out = argv[++i];
        } else if (strcmp(a, "--sha256") == 0) {
            sha = argv[++i];
        } else if (strcmp(a, "--key") == 0) {
            key = argv[++i];
        } else if (strcmp(a, "--ca-file") == 0) {
            o.ca_file = argv[++i];
        } else if (strcmp(a, "--s3-endpoint") == 0) {
            o.s3_endpoint = argv[++i];
        } else if (strcmp(a, "--s3-region") == 0) {
            o.s3_region = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "par fetch: unknown option '%s' (see par fetch --help)\n", a);
            return 2;
        } else if (url == NULL) {
            url = a;
        } else {
            fprintf(stderr, "par fetch: one URL at a time\n");
            return 2;
        }
    }
    if (url == NULL) {
        usage_fetch(stderr);
        return 2;
    }
    if (out == NULL) {
        const char *slash = strrchr(url, '/');
        out = slash && slash[1] ? slash + 1 : "package.apkg";
    }
    par_trust_t trust = {0};
    par_buf_t err, side;
    par_buf_init(&err, 0);
    par_buf_init(&side, 0);
    int rc = 1;
    if (key) {
        par_trusted_key_t tk = {.key = key};
        if (par_trust_init(&trust, &tk, 1, 1, &err) != PAR_OK) {
            fprintf(stderr, "par fetch: %.*s", (int)err.len, err.data);
            goto out;
        }
    }
    /* the digest to expect: --sha256, else {url}.sha256 when the source has one */
    char expected[65] = "";
    if (sha) {
        snprintf(expected, sizeof(expected), "%s", sha);
    } else {
        par_fetch_opts_t so = o;
        so.max_bytes = 64 * 1024;
        par_fetch_result_t sr;
        par_buf_t su, serr;
        par_buf_init(&su, 0);
        par_buf_init(&serr, 0);
        par_buf_appendf(&su, "%s.sha256", url);
        par_buf_terminate(&su);
        if (par_fetch(su.data, &so, &sr, &serr) == PAR_OK && sr.body.len >= 64)
            snprintf(expected, sizeof(expected), "%.64s", sr.body.data);
        par_fetch_result_free(&sr);
        par_buf_free(&su);
        par_buf_free(&serr);
    }
    progress_t pg = {.name = out};
    if (isatty(STDERR_FILENO)) {
        o.progress = on_progress;
        o.progress_ud = &pg;
    }
    par_fetch_result_t r;
    int frc = par_fetch(url, &o, &r, &err);
    if (pg.shown)
        fputc('\n', stderr);
    if (frc != PAR_OK) {
        fprintf(stderr, "par fetch: %s: %.*s", par_status_name(frc), (int)err.len,
                err.data ? err.data : "\n");
        par_fetch_result_free(&r);
        goto out;
    }
    if (expected[0] && strcmp(expected, r.sha256) != 0) {
        fprintf(stderr, "par fetch: digest_mismatch: %s: expected %s, got %s\n", url, expected,
                r.sha256);
        par_fetch_result_free(&r);
        goto out;
    }
    char signer[17] = "";
    if (key) {
        par_fetch_opts_t so = o;
        so.max_bytes = 64 * 1024;
        so.progress = NULL;
        par_fetch_result_t sr;
        par_buf_t su;
        par_buf_init(&su, 0);
        par_buf_appendf(&su, "%s.minisig", url);
        par_buf_terminate(&su);
        int src = par_fetch(su.data, &so, &sr, &err);
        par_buf_free(&su);
        if (src != PAR_OK) {
            fprintf(stderr, "par fetch: signature_missing: %.*s", (int)err.len,
                    err.data ? err.data : "\n");
            par_fetch_result_free(&r);
            par_fetch_result_free(&sr);
            goto out;
        }
        int vrc = par_trust_verify(&trust, sr.body.data, sr.body.len, r.body.data, r.body.len,
                                   r.blake2b, signer, &err);
        if (vrc != PAR_OK) {
            fprintf(stderr, "par fetch: %s: %.*s", par_status_name(vrc), (int)err.len,
                    err.data ? err.data : "\n");
            par_fetch_result_free(&r);
            par_fetch_result_free(&sr);
            goto out;
        }
        char sigpath[4096];
        snprintf(sigpath, sizeof(sigpath), "%s.minisig", out);
        write_all(sigpath, sr.body.data, sr.body.len);
        par_fetch_result_free(&sr);
    }
    if (write_all(out, r.body.data ? r.body.data : "", r.body.len) != 0) {
        fprintf(stderr, "par fetch: cannot write %s\n", out);
        par_fetch_result_free(&r);
        goto out;
    }
    printf("%s  %s  %zu bytes  %.0f ms%s%s%s\n", r.sha256, out, r.body.len, r.ms,
           expected[0] ? "  digest verified" : "", signer[0] ? "  signed by " : "", signer);
    par_fetch_result_free(&r);
    rc = 0;
out:
    par_trust_free(&trust);
    par_buf_free(&err);
    par_buf_free(&side);
    return rc;
}
