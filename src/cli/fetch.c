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

typedef struct args {
    const char *url, *out, *sha, *key;
    par_fetch_opts_t o;
} args_t;

/* -1 to go on, else the exit status (0 after --help). */
static int parse_args(int argc, char **argv, args_t *a)
{
    memset(a, 0, sizeof(*a));
    par_fetch_opts_init(&a->o);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **slot = strcmp(s, "-o") == 0              ? &a->out
                            : strcmp(s, "--sha256") == 0      ? &a->sha
                            : strcmp(s, "--key") == 0         ? &a->key
                            : strcmp(s, "--ca-file") == 0     ? &a->o.ca_file
                            : strcmp(s, "--s3-endpoint") == 0 ? &a->o.s3_endpoint
                            : strcmp(s, "--s3-region") == 0   ? &a->o.s3_region
                                                              : NULL;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            usage_fetch(stdout);
            return 0;
        } else if (strcmp(s, "--s3-path-style") == 0) {
            a->o.s3_path_style = 1;
        } else if (strcmp(s, "--allow-http") == 0) {
            a->o.allow_http = 1;
        } else if (s[0] == '-' && v == NULL) {
            fprintf(stderr, "par fetch: %s needs a value (see par fetch --help)\n", s);
            return 2;
        } else if (slot) {
            *slot = argv[++i];
        } else if (s[0] == '-') {
            fprintf(stderr, "par fetch: unknown option '%s' (see par fetch --help)\n", s);
            return 2;
        } else if (a->url == NULL) {
            a->url = s;
        } else {
            fprintf(stderr, "par fetch: one URL at a time\n");
            return 2;
        }
    }
    if (a->url == NULL) {
        usage_fetch(stderr);
        return 2;
    }
    if (a->out == NULL) {
        const char *slash = strrchr(a->url, '/');
        a->out = slash && slash[1] ? slash + 1 : "package.apkg";
    }
    return -1;
}

/* Fetches the small file {url}{suffix} (digest, signature) into `sr`. */
static int fetch_side(const args_t *a, const char *suffix, par_fetch_result_t *sr, par_buf_t *err)
{
    par_fetch_opts_t so = a->o;
    so.max_bytes = 64 * 1024;
    so.progress = NULL;
    par_buf_t su;
    par_buf_init(&su, 0);
    par_buf_appendf(&su, "%s%s", a->url, suffix);
    int rc = par_buf_terminate(&su);
    if (rc == PAR_OK)
        rc = par_fetch(su.data, &so, sr, err);
    else
        memset(sr, 0, sizeof(*sr));
    par_buf_free(&su);
    return rc;
}

/* The signature {url}.minisig must vouch for `r` under the key; saved beside `out`. */
static int check_signature(const args_t *a, par_trust_t *trust, const par_fetch_result_t *r,
                           char signer[17], par_buf_t *err)
{
    par_fetch_result_t sr;
    int rc = fetch_side(a, ".minisig", &sr, err);
    if (rc != PAR_OK) {
        fprintf(stderr, "par fetch: signature_missing: %.*s", (int)err->len,
                err->data ? err->data : "\n");
    } else if ((rc = par_trust_verify(trust, sr.body.data, sr.body.len, r->body.data, r->body.len,
                                      r->blake2b, signer, err)) != PAR_OK) {
        fprintf(stderr, "par fetch: %s: %.*s", par_status_name(rc), (int)err->len,
                err->data ? err->data : "\n");
    } else {
        char sigpath[4096];
        snprintf(sigpath, sizeof(sigpath), "%s.minisig", a->out);
        write_all(sigpath, sr.body.data, sr.body.len);
    }
    par_fetch_result_free(&sr);
    return rc;
}

int par_cli_fetch(int argc, char **argv)
{
    args_t a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    rc = 1;
    par_trust_t trust = {0};
    par_buf_t err;
    par_buf_init(&err, 0);
    par_fetch_result_t r;
    memset(&r, 0, sizeof(r));
    if (a.key) {
        par_trusted_key_t tk = {.key = a.key};
        if (par_trust_init(&trust, &tk, 1, 1, &err) != PAR_OK) {
            fprintf(stderr, "par fetch: %.*s", (int)err.len, err.data);
            goto out;
        }
    }
    /* the digest to expect: --sha256, else {url}.sha256 when the source has one */
    char expected[65] = "";
    if (a.sha) {
        snprintf(expected, sizeof(expected), "%s", a.sha);
    } else {
        par_buf_t serr;
        par_buf_init(&serr, 0);
        if (fetch_side(&a, ".sha256", &r, &serr) == PAR_OK && r.body.len >= 64)
            snprintf(expected, sizeof(expected), "%.64s", r.body.data);
        par_fetch_result_free(&r);
        par_buf_free(&serr);
    }
    progress_t pg = {.name = a.out};
    if (isatty(STDERR_FILENO)) {
        a.o.progress = on_progress;
        a.o.progress_ud = &pg;
    }
    int frc = par_fetch(a.url, &a.o, &r, &err);
    if (pg.shown)
        fputc('\n', stderr);
    char signer[17] = "";
    if (frc != PAR_OK) {
        fprintf(stderr, "par fetch: %s: %.*s", par_status_name(frc), (int)err.len,
                err.data ? err.data : "\n");
    } else if (expected[0] && strcmp(expected, r.sha256) != 0) {
        fprintf(stderr, "par fetch: digest_mismatch: %s: expected %s, got %s\n", a.url, expected,
                r.sha256);
    } else if (a.key && check_signature(&a, &trust, &r, signer, &err) != PAR_OK) {
        ; /* said */
    } else if (write_all(a.out, r.body.data ? r.body.data : "", r.body.len) != 0) {
        fprintf(stderr, "par fetch: cannot write %s\n", a.out);
    } else {
        printf("%s  %s  %zu bytes  %.0f ms%s%s%s\n", r.sha256, a.out, r.body.len, r.ms,
               expected[0] ? "  digest verified" : "", signer[0] ? "  signed by " : "", signer);
        rc = 0;
    }
out:
    par_fetch_result_free(&r);
    par_trust_free(&trust);
    par_buf_free(&err);
    return rc;
}
