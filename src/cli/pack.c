/*
 * cli/pack.c — `par pack` (build a deterministic .apkg from a directory) and
 * `par inspect` (show a package's manifest, exports and digest; runs no code).
 *
 * Both run every check a deploy runs that needs no package code: agent.yaml
 * (pkg/manifest.c) and compatibility with this runtime (pkg/compat.c, the
 * function deploy calls), and print every problem at once, one per line
 * with its field path. `par pack --sign` writes FILE.apkg.partial and its
 * signature and renames them into place only once both exist: a failed
 * signature leaves no unsigned FILE.apkg behind.
 *
 * A runtime no built-in loader serves (node20) is checked by the loader of a
 * plugin when `par pack` is given the plugins (--plugin PATH, or the
 * `plugins` of --config FILE): they are loaded and initialised as `par
 * serve` would, with a temporary state directory, and their loader's
 * validate runs on DIR (nothing is prepared or installed).
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <par/par.h>

#include "cli/cli.h"
#include "config/config.h"
#include "pkg/archive.h"
#include "pkg/compat.h"
#include "pkg/manifest.h"
#include "obs/log.h"
#include "plugin/plugin.h"
#include "registry/cache.h"
#include "util/buf.h"
#include "util/fs.h"
#include "util/proc.h"

static void usage_pack(FILE *f)
{
    fprintf(f,
            "usage: par pack DIR -o FILE.apkg [--no-compat] [--plugin PATH]... [--config FILE]\n"
            "                [--sign [-s par.key] [--password-file F] [-t \"trusted comment\"]]\n\n"
            "Builds a ZIP package from DIR (which must hold agent.yaml). First it runs\n"
            "every check a deploy runs that needs no package code (agent.yaml, a loader\n"
            "for the runtime, entrypoint modules and libraries present, ELF objects for\n"
            "this machine, metadata.par.requires and abi) and prints every problem.\n"
            "--no-compat skips the checks against this machine and runtime (for a package\n"
            "built for another one); agent.yaml is still checked. A runtime a plugin\n"
            "serves (node20 with plugins/node) is checked by that plugin's loader: give\n"
            "the plugin with --plugin PATH (repeatable), or --config FILE to load the\n"
            "`plugins` of a configuration. Same input, same bytes:\n"
            "entries are sorted, timestamps and owners fixed. --sign then writes\n"
            "FILE.apkg.minisig with a minisign secret key (as `par sign` does); when\n"
            "signing fails, neither file is written.\n");
}

static void usage_inspect(FILE *f)
{
    fprintf(f, "usage: par inspect FILE.apkg\n\n"
               "Prints the package's manifest, exports, warnings and SHA-256 as JSON, after\n"
               "the checks a deploy runs that need no package code; each problem is printed\n"
               "on stderr (exit status 1). Runs no code.\n");
}

/* Prints each line of `text` as "par CMD: <line>" on stderr. */
static void print_lines(const char *cmd, const char *prefix, const par_buf_t *text)
{
    const char *p = text->data ? text->data : "", *end = p + text->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n)
            fprintf(stderr, "par %s: %s%.*s\n", cmd, prefix, (int)n, p);
        p += n + 1;
    }
}

/* Parses agent.yaml and, unless `root` is NULL, checks the package at `root`
 * against this runtime. Prints warnings and problems; returns 0 when there
 * is no problem (then *out is the manifest), 1 otherwise (*out may still be
 * set when only compatibility failed). */
static int check_package(const char *cmd, const char *yaml, size_t len, const char *root,
                         par_plugins_t *plugins, par_manifest_t **out)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    *out = NULL;
    int rc = par_manifest_parse(yaml, len, out, &err);
    if (rc != PAR_OK) {
        print_lines(cmd, "", &err);
        par_buf_free(&err);
        return 1;
    }
    for (size_t i = 0; i < (*out)->warnings.count; i++)
        fprintf(stderr, "par %s: warning: %s\n", cmd, (*out)->warnings.items[i]);
    int problems = 0, other = root && (*out)->runtime_kind == PAR_RUNTIME_OTHER;
    /* a runtime no built-in loader serves: a plugin's loader checks it, if one serves it */
    int by_plugin = other ? par_plugins_check_package(plugins, root, *out, &err) : -1;
    if (by_plugin >= 0) {
        problems = by_plugin + par_pkg_compat_common(root, *out, &err);
    } else if (root) {
        problems = par_pkg_compat_check(root, *out, &err);
        if (other && strcmp(cmd, "pack") == 0)
            par_buf_appends(&err, "runtime: a runtime a plugin serves is checked by that plugin: "
                                  "give it with --plugin PATH or --config FILE (its `plugins`), "
                                  "or skip these checks with --no-compat\n");
    }
    print_lines(cmd, "agent.yaml: ", &err);
    par_buf_free(&err);
    return problems ? 1 : 0;
}

/* Writes FILE.apkg, or with `sign` FILE.apkg.partial and its signature
 * first, then moves the signature and the archive into place, in that
 * order: a failed signature leaves neither. */
static int pack_into_place(const char *dir, const char *outp, int sign, const char *seckey,
                           const char *pwfile, const char *comment)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    if (!sign) {
        int rc = par_archive_pack(dir, outp, &err);
        if (rc != PAR_OK)
            fprintf(stderr, "par pack: %.*s", (int)err.len, err.data ? err.data : "");
        par_buf_free(&err);
        return rc == PAR_OK ? 0 : 1;
    }
    char part[PATH_MAX], part_sig[PATH_MAX + 16], sig[PATH_MAX + 16], tc[PATH_MAX + 64];
    snprintf(part, sizeof(part), "%s.partial", outp);
    snprintf(part_sig, sizeof(part_sig), "%s.minisig", part);
    snprintf(sig, sizeof(sig), "%s.minisig", outp);
    /* An earlier output inside `dir` must not pack itself: the packer skips
     * the file at its output path, so that path is made the earlier output
     * (a hard link) until the new archive replaces it. */
    unlink(part);
    if (link(outp, part) != 0 && errno != ENOENT)
        unlink(part);
    /* minisign's default trusted comment, naming the final file, not the partial one */
    const char *base = strrchr(outp, '/');
    if (comment == NULL)
        snprintf(tc, sizeof(tc), "timestamp:%lu\tfile:%s\thashed", (unsigned long)time(NULL),
                 base ? base + 1 : outp);
    int rc = 1;
    if (par_archive_pack(dir, part, &err) != PAR_OK)
        fprintf(stderr, "par pack: %.*s", (int)err.len, err.data ? err.data : "");
    else if (par_cli_sign_file(part, seckey, pwfile, comment ? comment : tc, 0) != 0)
        fprintf(stderr, "par pack: not signed, so %s was not written\n", outp);
    else if (rename(part_sig, sig) != 0 || rename(part, outp) != 0)
        fprintf(stderr, "par pack: %s: %s\n", outp, strerror(errno));
    else
        rc = 0;
    if (rc != 0) {
        unlink(part);
        unlink(part_sig);
    }
    par_buf_free(&err);
    return rc;
}

/* Misuse: names argument `a` (or says `why`), then the usage; exit status 2. */
static int pack_misuse(const char *a, const char *why)
{
    int valued = a && (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0 || strcmp(a, "-s") == 0 ||
                       strcmp(a, "--password-file") == 0 || strcmp(a, "-t") == 0);
    if (why)
        fprintf(stderr, "par pack: %s\n", why);
    else
        fprintf(stderr, "par pack: %s `%s`\n",
                a[0] != '-' ? "unexpected argument"
                : valued    ? "a value is missing after"
                            : "unknown option",
                a);
    usage_pack(stderr);
    return 2;
}

/* The plugins `par pack` checks with: each --plugin PATH, then the
 * `plugins` of --config FILE, loaded and initialised with a temporary state
 * directory (its path in state[cap], for the caller to remove). 0, or 1
 * after saying why. */
static int pack_plugins(int argc, char **argv, const char *config, char *state, size_t cap,
                        par_plugins_t **out)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    par_conf_t c;
    par_conf_init(&c);
    json_t *list = json_array();
    int rc = list ? PAR_OK : PAR_E_NO_MEMORY;
    for (int i = 1; rc == PAR_OK && i + 1 < argc; i++)
        if (strcmp(argv[i], "--plugin") == 0) {
            char abs[PATH_MAX];
            const char *path = realpath(argv[i + 1], abs) ? abs : argv[i + 1];
            if (json_array_append_new(list, json_pack("{s:s}", "path", path)) != 0)
                rc = PAR_E_NO_MEMORY;
            i++;
        }
    if (rc == PAR_OK && config && (rc = par_conf_load_file(&c, config, &err)) == PAR_OK &&
        c.v[PAR_K_PLUGINS].v && json_array_extend(list, c.v[PAR_K_PLUGINS].v) != 0)
        rc = PAR_E_NO_MEMORY;
    const char *t = getenv("TMPDIR");
    snprintf(state, cap, "%s/par-pack-XXXXXX", t && *t ? t : "/tmp");
    if (rc == PAR_OK && mkdtemp(state) == NULL) {
        par_buf_appendf(&err, "cannot create a temporary directory: %s\n", strerror(errno));
        state[0] = '\0';
        rc = PAR_E_IO;
    }
    if (rc == PAR_OK) {
        par_log_init(PAR_LOG_WARN, 0); /* a plugin's warnings, as text; not its chatter */
        rc = par_plugins_load(list, state, out, &err);
    }
    if (rc != PAR_OK) {
        while (err.len && err.data[err.len - 1] == '\n')
            err.len--;
        fprintf(stderr, "par pack: %.*s\n", (int)err.len, err.len ? err.data : par_strerror(rc));
    }
    json_decref(list);
    par_conf_free(&c);
    par_buf_free(&err);
    return rc == PAR_OK ? 0 : 1;
}

int par_cli_pack(int argc, char **argv)
{
    if (par_cli_wants_help(argc, argv)) {
        usage_pack(stdout);
        return 0;
    }
    const char *dir = NULL, *outp = NULL, *seckey = NULL, *pwfile = NULL, *comment = NULL;
    const char *config = NULL;
    int sign = 0, compat = 1, nplugins = 0;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc)
            outp = argv[++i];
        else if (strcmp(argv[i], "--plugin") == 0 && i + 1 < argc)
            i++, nplugins++; /* read again by pack_plugins */
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--sign") == 0)
            sign = 1;
        else if (strcmp(argv[i], "--no-compat") == 0)
            compat = 0;
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            seckey = argv[++i], sign = 1;
        else if (strcmp(argv[i], "--password-file") == 0 && i + 1 < argc)
            pwfile = argv[++i];
        else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            comment = argv[++i];
        else if (dir == NULL && argv[i][0] != '-')
            dir = argv[i];
        else {
            return pack_misuse(argv[i], NULL);
        }
    }
    if (dir == NULL || outp == NULL)
        return pack_misuse(NULL, dir ? "-o FILE.apkg is required (e.g. -o NAME-VERSION.apkg)"
                                     : "the package directory DIR is required");
    char ypath[PATH_MAX];
    snprintf(ypath, sizeof(ypath), "%s/agent.yaml", dir);
    par_buf_t y;
    par_buf_init(&y, 0);
    if (par_file_read(ypath, PAR_MANIFEST_MAX_BYTES, &y) != 0) {
        fprintf(stderr, "par pack: %s: %s\n", ypath,
                errno == EFBIG ? "larger than the manifest size limit" : strerror(errno));
        par_buf_free(&y);
        return 1;
    }
    char state[PATH_MAX] = "";
    par_plugins_t *plugins = NULL;
    int bad = compat && (nplugins || config) &&
              pack_plugins(argc, argv, config, state, sizeof(state), &plugins) != 0;
    par_manifest_t *m = NULL;
    if (!bad)
        bad = check_package("pack", y.data ? y.data : "", y.len, compat ? dir : NULL, plugins, &m);
    par_manifest_free(m);
    par_buf_free(&y);
    par_plugins_destroy(plugins);
    if (state[0]) {
        par_fs_remove(state, NULL);
        par_log_shutdown();
    }
    if (bad)
        return 1;
    return pack_into_place(dir, outp, sign, seckey, pwfile, comment);
}

/* NULL when out of memory. An element jansson refuses (text that is not
 * UTF-8) is left out, as it always was. */
static json_t *inspect_json(const par_manifest_t *m, const par_archive_bytes_t *a)
{
    json_t *ex = json_array(), *warn = json_array();
    if (ex == NULL || warn == NULL) {
        json_decref(ex);
        json_decref(warn);
        return NULL;
    }
    for (size_t i = 0; i < m->export_count; i++) {
        const par_export_t *e = &m->exports[i];
        char id[300];
        snprintf(id, sizeof(id), "%s%s%s", m->name, e->name[0] ? "/" : "", e->name);
        json_array_append_new(ex, json_pack("{s:s, s:s, s:b, s:s, s:s}", "id", id, "name", e->name,
                                            "public", e->is_public, "entrypoint", e->entrypoint,
                                            "description", e->description));
    }
    for (size_t i = 0; i < m->warnings.count; i++)
        json_array_append_new(warn, json_string(m->warnings.items[i]));
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:o}", "name", m->name,
                          "version", m->package_version, "display_name", m->display_name,
                          "description", m->description, "runtime", m->runtime, "entrypoint",
                          m->entrypoint ? m->entrypoint : "", "sha256", a->sha256, "size",
                          (json_int_t)a->len, "exports", ex, "warnings", warn);
    if (o == NULL)
        return NULL; /* json_pack's "o" took ex and warn, even on failure */
    if (m->par_requires)
        json_object_set_new(o, "requires", json_string(m->par_requires));
    if (m->par_abi >= 0)
        json_object_set_new(o, "abi", json_integer(m->par_abi));
    if (m->calls) {
        json_t *calls = json_array();
        for (size_t i = 0; calls && m->calls[i]; i++)
            json_array_append_new(calls, json_string(m->calls[i]));
        if (json_object_set_new(o, "calls", calls) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* Extracts the archive into a temporary directory (with the limits a deploy
 * applies) so that pkg/compat.c sees the files a deploy would. */
static int extract_temp(const par_archive_bytes_t *a, char *dir, size_t n, par_buf_t *err)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, n, "%s/par-inspect-XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(dir) == NULL) {
        par_buf_appendf(err, "cannot create a temporary directory: %s\n", strerror(errno));
        dir[0] = '\0';
        return PAR_E_IO;
    }
    par_archive_limits_t lim;
    par_archive_limits_default(&lim);
    return par_archive_extract(a, dir, &lim, err);
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
    char tmp[PATH_MAX] = "";
    int bad = 1;
    int rc = par_archive_load(argv[1], &lim, &a, &err);
    if (rc == PAR_OK)
        rc = par_archive_read_member(&a, "agent.yaml", PAR_MANIFEST_MAX_BYTES, &y, &err);
    if (rc == PAR_OK)
        rc = extract_temp(&a, tmp, sizeof(tmp), &err);
    if (rc != PAR_OK) {
        fprintf(stderr, "par inspect: %s: %s\n%.*s", argv[1], par_strerror(rc), (int)err.len,
                err.data ? err.data : "");
    } else {
        bad = check_package("inspect", y.data ? y.data : "", y.len, tmp, NULL, &m);
    }
    if (m) {
        json_t *o = inspect_json(m, &a);
        if (o == NULL) {
            fprintf(stderr, "par inspect: %s: out of memory\n", argv[1]);
            bad = 1;
            goto out;
        }
        /* what a deploy would write: the same reader, through the same checks */
        json_t *entries = NULL;
        par_buf_reset(&err);
        if (par_archive_list(&a, &lim, &entries, &err) == PAR_OK) {
            json_object_set_new(o, "entries", entries);
        } else {
            fprintf(stderr, "par inspect: %s: %.*s", argv[1], (int)err.len,
                    err.data ? err.data : "");
            bad = 1;
        }
        char *s = json_dumps(o, JSON_INDENT(2));
        if (s != NULL)
            printf("%s\n", s);
        else {
            fprintf(stderr, "par inspect: %s: out of memory\n", argv[1]);
            bad = 1;
        }
        free(s);
        json_decref(o);
    }
out:
    if (tmp[0])
        par_fs_remove(tmp, NULL);
    par_manifest_free(m);
    par_buf_free(&err);
    par_buf_free(&y);
    par_archive_bytes_free(&a);
    return bad;
}
