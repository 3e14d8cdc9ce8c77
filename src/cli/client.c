/*
 * cli/client.c — the management client: `par deploy FILE|URL`, `par ls`,
 * `par agents`, `par rm NAME[@VERSION]`, `par reload NAME`, `par usage`.
 *
 * Each command is one request to a running server's HTTP API (docs/api.md)
 * through libcurl (util/curl.h's loader): `--server URL` (else $PAR_SERVER,
 * else http://$PAR_LISTEN, else the local default http://127.0.0.1:8080),
 * `--token T` (else $PAR_TOKEN) sent as a bearer credential. The answer is
 * printed as a table, or as the server's JSON with `--json`. A refusal prints
 * "error_name: message" to stderr and exits 1; misuse exits 2.
 *
 * Called from main.c on the main thread; it never reads or writes the
 * server's state other than through the API.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "util/buf.h"
#include "util/curl.h"
#include "util/suggest.h"

#define RESPONSE_MAX (64u << 20) /* a package list or usage report; more is a broken server */

typedef struct client {
    const char *cmd;
    const char *server, *token;
    int json;
    const char *arg; /* FILE|URL, NAME, NAME@VERSION */
    const char *group_by, *from, *to, *sha256, *signature_url;
} client_t;

static void usage_client(FILE *f)
{
    fprintf(f, "usage: par deploy FILE|URL [--sha256 HEX] [--signature-url URL]\n"
               "       par ls\n"
               "       par agents\n"
               "       par rm NAME[@VERSION]\n"
               "       par reload NAME\n"
               "       par usage [--group-by agent|subject|tenant|package] [--from MS] [--to MS]\n"
               "options of every command:\n"
               "  --server URL   the running server (PAR_SERVER; else http://$PAR_LISTEN; else\n"
               "                 http://127.0.0.1:8080, the local default)\n"
               "  --token T      bearer credential: an OIDC token or an API key (PAR_TOKEN)\n"
               "  --json         print the server's JSON instead of a table\n\n"
               "deploy: a FILE (an .apkg or a package directory) is read by the server, so it\n"
               "must be on the server's host (its absolute path is sent); a URL is https:// or\n"
               "s3://. Errors are printed as \"error_name: message\", exit status 1.\n");
}

/* ---- HTTP --------------------------------------------------------------------------- */

static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
    return par_buf_append(ud, p, sz * n) == 0 ? sz * n : 0;
}

/* One request. Returns the HTTP status (body in `out`), or -1 after printing
 * why the server could not be reached. */
static long request(const client_t *c, const char *method, const char *path, const char *body,
                    par_buf_t *out)
{
    if (par_curl_load() != 0) {
        fprintf(stderr, "unavailable: libcurl: %s\n", par_curl_error());
        return -1;
    }
    par_buf_t url, auth;
    par_buf_init(&url, 0), par_buf_init(&auth, 0);
    size_t sl = strlen(c->server);
    while (sl && c->server[sl - 1] == '/')
        sl--;
    par_buf_appendf(&url, "%.*s%s", (int)sl, c->server, path);
    par_buf_terminate(&url);
    struct curl_slist *hdr = curl_slist_append(NULL, "content-type: application/json");
    if (c->token && *c->token) {
        par_buf_appendf(&auth, "authorization: Bearer %s", c->token);
        par_buf_terminate(&auth);
        hdr = curl_slist_append(hdr, auth.data);
    }
    par_curl_opts_t o = {.url = url.data,
                         .protocols = "http,https",
                         .connect_timeout_ms = 5000,
                         .timeout_ms = 600000, /* a deploy may install requirements */
                         .on_body = collect,
                         .body_ud = out,
                         .headers = hdr};
    CURL *h = url.data && hdr ? par_curl_new(&o) : NULL;
    if (h == NULL) {
        fprintf(stderr, "unavailable: libcurl: cannot create a handle\n");
        curl_slist_free_all(hdr);
        par_buf_free(&url), par_buf_free(&auth);
        return -1;
    }
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    long status = -1;
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    else
        fprintf(stderr, "unreachable: %s: %s (is `par serve` running? --server URL)\n", url.data,
                curl_easy_strerror(rc));
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    par_buf_free(&url), par_buf_free(&auth);
    return status;
}

/* Parses a 2xx answer; prints a refusal as "error_name: message". */
static json_t *answer(long status, par_buf_t *body)
{
    if (status < 0)
        return NULL;
    json_error_t je;
    json_t *j = json_loadb(body->data ? body->data : "", body->len, 0, &je);
    if (status >= 200 && status < 300 && j)
        return j;
    const char *name = json_string_value(json_object_get(j, "error"));
    const char *msg = json_string_value(json_object_get(j, "message"));
    if (name)
        fprintf(stderr, "%s: %s\n", name, msg ? msg : "");
    else
        fprintf(stderr, "bad_response: HTTP %ld, not a PAR answer: %.*s\n", status,
                (int)(body->len > 200 ? 200 : body->len), body->data ? body->data : "");
    json_decref(j);
    return NULL;
}

/* ---- tables ------------------------------------------------------------------------- */

typedef struct table {
    size_t ncol, nrow;
    char **cells; /* row-major; row 0 is the header */
} table_t;

static void table_row(table_t *t, const char *const *vals)
{
    char **c = realloc(t->cells, (t->nrow + 1) * t->ncol * sizeof(char *));
    if (c == NULL)
        return;
    t->cells = c;
    for (size_t i = 0; i < t->ncol; i++)
        c[t->nrow * t->ncol + i] = strdup(vals[i] ? vals[i] : "-");
    t->nrow++;
}

static void table_print(table_t *t)
{
    size_t w[16] = {0};
    for (size_t r = 0; r < t->nrow; r++)
        for (size_t i = 0; i < t->ncol && i < 16; i++) {
            size_t l = strlen(t->cells[r * t->ncol + i]);
            w[i] = l > w[i] ? l : w[i];
        }
    for (size_t r = 0; r < t->nrow; r++) {
        for (size_t i = 0; i < t->ncol; i++) {
            const char *s = t->cells[r * t->ncol + i];
            if (i + 1 < t->ncol)
                printf("%-*s  ", (int)w[i], s);
            else
                printf("%s\n", s);
            free((void *)s);
        }
    }
    free(t->cells);
}

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void print_json(json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    putchar('\n');
}

/* ---- commands ----------------------------------------------------------------------- */

static void packages_table(json_t *list)
{
    static const char *const hdr[] = {"NAME", "VERSION", "STATE", "WORKERS", "SIGNER", "SOURCE"};
    table_t t = {.ncol = 6};
    table_row(&t, hdr);
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p)
    {
        char workers[16];
        snprintf(workers, sizeof(workers), "%zu", json_array_size(json_object_get(p, "workers")));
        const char *err = str(p, "last_error_name");
        const char *state = str(p, "state");
        char st[96];
        snprintf(st, sizeof(st), "%s%s%s", state ? state : "-", err ? " " : "", err ? err : "");
        const char *signer = str(p, "signer");
        const char *row[] = {str(p, "name"),
                             str(p, "version"),
                             st,
                             workers,
                             signer && *signer ? signer : "unsigned",
                             str(p, "source")};
        table_row(&t, row);
    }
    table_print(&t);
}

static int cmd_ls(const client_t *c, json_t *j)
{
    if (c->json)
        print_json(j);
    else
        packages_table(json_object_get(j, "packages"));
    return 0;
}

static int cmd_agents(const client_t *c, json_t *j)
{
    if (c->json) {
        print_json(j);
        return 0;
    }
    static const char *const hdr[] = {"AGENT", "PACKAGE", "VERSION", "DESCRIPTION"};
    table_t t = {.ncol = 4};
    table_row(&t, hdr);
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(j, "agents"), i, a)
    {
        const char *row[] = {str(a, "id"), str(a, "package"), str(a, "version"),
                             str(a, "description")};
        table_row(&t, row);
    }
    table_print(&t);
    return 0;
}

/* deploy and reload answer with one package record */
static int cmd_record(const client_t *c, json_t *j)
{
    if (c->json) {
        print_json(j);
        return 0;
    }
    json_t *list = json_array();
    json_array_append(list, j);
    packages_table(list);
    json_decref(list);
    return 0;
}

static int cmd_rm(const client_t *c, json_t *j)
{
    if (c->json) {
        print_json(j);
        return 0;
    }
    const char *v = str(j, "version");
    printf("removed %s%s%s\n", str(j, "removed") ? str(j, "removed") : c->arg, v ? " " : "",
           v ? v : "");
    return 0;
}

static void units_text(json_t *units, char *out, size_t n)
{
    const char *k;
    json_t *v;
    size_t used = 0;
    out[0] = '\0';
    json_object_foreach(units, k, v)
    {
        int w = snprintf(out + used, n - used, "%s%s=%" JSON_INTEGER_FORMAT, used ? " " : "", k,
                         json_integer_value(v));
        if (w < 0 || (size_t)w >= n - used)
            break;
        used += (size_t)w;
    }
}

static int cmd_usage(const client_t *c, json_t *j)
{
    if (c->json) {
        print_json(j);
        return 0;
    }
    static const char *const hdr[] = {"KEY", "CALLS", "ERRORS", "ROOTS", "DURATION_MS", "UNITS"};
    table_t t = {.ncol = 6};
    table_row(&t, hdr);
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(j, "groups"), i, g)
    {
        char n[3][24], dur[32], units[512];
        static const char *const keys[] = {"count", "errors", "roots"};
        for (int k = 0; k < 3; k++)
            snprintf(n[k], sizeof(n[k]), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(json_object_get(g, keys[k])));
        snprintf(dur, sizeof(dur), "%.3f",
                 json_number_value(json_object_get(g, "duration_ms_sum")));
        units_text(json_object_get(g, "units"), units, sizeof(units));
        const char *key = str(g, "key");
        const char *row[] = {key && *key ? key : "(all)", n[0], n[1], n[2], dur, units};
        table_row(&t, row);
    }
    table_print(&t);
    return 0;
}

/* ---- arguments ---------------------------------------------------------------------- */

/* Says in `why` what is wrong with argument `a`: an unknown option (with the
 * nearest known one) or one argument too many. */
static int bad_arg(const char *a, char *why, size_t cap)
{
    static const char *const known[] = {"--json", "--server", "--token",  "--group-by",
                                        "--from", "--to",     "--sha256", "--signature-url",
                                        "--help", NULL};
    const char *near = a[0] == '-' ? par_suggest(a, known) : NULL;
    if (a[0] != '-')
        snprintf(why, cap, "unexpected argument '%s'", a);
    else if (near)
        snprintf(why, cap, "unknown option `%s` (did you mean `%s`?)", a, near);
    else
        snprintf(why, cap, "unknown option `%s` for this command", a);
    return -1;
}

static int parse_client_args(int argc, char **argv, client_t *c, char *why, size_t cap)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--json") == 0) {
            c->json = 1;
            continue;
        }
        if (strcmp(a, "--server") == 0)
            slot = &c->server;
        else if (strcmp(a, "--token") == 0)
            slot = &c->token;
        else if (strcmp(a, "--group-by") == 0 && strcmp(c->cmd, "usage") == 0)
            slot = &c->group_by;
        else if (strcmp(a, "--from") == 0 && strcmp(c->cmd, "usage") == 0)
            slot = &c->from;
        else if (strcmp(a, "--to") == 0 && strcmp(c->cmd, "usage") == 0)
            slot = &c->to;
        else if (strcmp(a, "--sha256") == 0 && strcmp(c->cmd, "deploy") == 0)
            slot = &c->sha256;
        else if (strcmp(a, "--signature-url") == 0 && strcmp(c->cmd, "deploy") == 0)
            slot = &c->signature_url;
        if (slot) {
            if (i + 1 >= argc) {
                snprintf(why, cap, "%s needs a value", a);
                return -1;
            }
            *slot = argv[++i];
        } else if (a[0] != '-' && c->arg == NULL) {
            c->arg = a;
        } else {
            return bad_arg(a, why, cap);
        }
    }
    int wants_arg =
        strcmp(c->cmd, "deploy") == 0 || strcmp(c->cmd, "rm") == 0 || strcmp(c->cmd, "reload") == 0;
    if ((c->arg != NULL) == wants_arg)
        return 0;
    if (wants_arg)
        snprintf(why, cap, "which package? (%s)",
                 strcmp(c->cmd, "deploy") == 0 ? "FILE or URL" : "NAME[@VERSION]");
    else
        bad_arg(c->arg, why, cap);
    return -1;
}

static void default_server(client_t *c, par_buf_t *own)
{
    const char *env = getenv("PAR_SERVER");
    const char *listen = getenv("PAR_LISTEN");
    if (c->server == NULL && env && *env)
        c->server = env;
    if (c->server == NULL && listen && *listen) {
        /* the forms par serve takes: ":8080" and "8080" (all or loopback
         * addresses), "0.0.0.0:8080" and "[::]:8080": this host's loopback */
        const char *port = strrchr(listen, ':');
        if (strspn(listen, "0123456789") == strlen(listen))
            par_buf_appendf(own, "http://127.0.0.1:%s", listen);
        else if (port && (port == listen || strncmp(listen, "0.0.0.0:", 8) == 0))
            par_buf_appendf(own, "http://127.0.0.1%s", port);
        else if (strncmp(listen, "[::]:", 5) == 0)
            par_buf_appendf(own, "http://[::1]%s", listen + 4);
        else
            par_buf_appendf(own, "http://%s", listen);
        par_buf_terminate(own);
        c->server = own->data;
    }
    if (c->server == NULL)
        c->server = "http://127.0.0.1:8080";
    if (c->token == NULL)
        c->token = getenv("PAR_TOKEN");
}

/* The request a command makes: method, path (into `path`), body (into `body`). */
static const char *route(client_t *c, par_buf_t *path, par_buf_t *body)
{
    if (strcmp(c->cmd, "deploy") == 0) {
        json_t *b = json_object();
        if (strstr(c->arg, "://")) {
            json_object_set_new(b, "url", json_string(c->arg));
        } else {
            char abs[PATH_MAX];
            if (realpath(c->arg, abs) == NULL) {
                fprintf(stderr, "not_found: %s: %s\n", c->arg, strerror(errno));
                json_decref(b);
                return NULL;
            }
            json_object_set_new(b, "path", json_string(abs));
        }
        if (c->sha256)
            json_object_set_new(b, "sha256", json_string(c->sha256));
        if (c->signature_url)
            json_object_set_new(b, "signature_url", json_string(c->signature_url));
        char *s = json_dumps(b, JSON_COMPACT);
        par_buf_appends(body, s ? s : "{}");
        free(s);
        json_decref(b);
        par_buf_appends(path, "/runtime/packages");
        return "POST";
    }
    if (strcmp(c->cmd, "ls") == 0)
        return par_buf_appends(path, "/runtime/packages"), "GET";
    if (strcmp(c->cmd, "agents") == 0)
        return par_buf_appends(path, "/agents"), "GET";
    if (strcmp(c->cmd, "rm") == 0)
        return par_buf_appendf(path, "/runtime/packages/%s", c->arg), "DELETE";
    if (strcmp(c->cmd, "reload") == 0)
        return par_buf_appendf(path, "/runtime/packages/%s/reload", c->arg), "POST";
    par_buf_appendf(path, "/runtime/usage?group_by=%s", c->group_by ? c->group_by : "agent");
    if (c->from)
        par_buf_appendf(path, "&from=%s", c->from);
    if (c->to)
        par_buf_appendf(path, "&to=%s", c->to);
    return "GET";
}

/* Names and version strings travel in a URL path: refuse what would change it. */
static int safe_arg(const char *s)
{
    for (; s && *s; s++)
        if (*s == '/' || *s == '?' || *s == '#' || *s == '%' || *s <= ' ')
            return 0;
    return 1;
}

/* A query value made only of `allowed` characters (NULL: absent, fine). */
static int query_arg(const char *s, const char *allowed)
{
    return s == NULL || (*s && strspn(s, allowed) == strlen(s));
}

int par_cli_client(int argc, char **argv)
{
    client_t c = {.cmd = argv[0]};
    if (par_cli_wants_help(argc, argv)) {
        usage_client(stdout);
        return 0;
    }
    char why[256];
    if (parse_client_args(argc, argv, &c, why, sizeof(why)) != 0) {
        fprintf(stderr, "par %s: %s\n", c.cmd, why);
        usage_client(stderr);
        return 2;
    }
    if (strcmp(c.cmd, "deploy") != 0 && !safe_arg(c.arg)) {
        fprintf(stderr, "invalid_argument: '%s' is not a package name[@version]\n", c.arg);
        return 2;
    }
    if (!query_arg(c.group_by, "abcdefghijklmnopqrstuvwxyz_") || !query_arg(c.from, "0123456789") ||
        !query_arg(c.to, "0123456789")) {
        fprintf(stderr, "invalid_argument: --group-by takes a word, --from/--to a number of "
                        "milliseconds since the epoch\n");
        return 2;
    }
    par_buf_t own, path, body, resp;
    par_buf_init(&own, 0), par_buf_init(&path, 0), par_buf_init(&body, 0);
    par_buf_init(&resp, RESPONSE_MAX);
    default_server(&c, &own);
    int rc = 1;
    const char *method = route(&c, &path, &body);
    par_buf_terminate(&path), par_buf_terminate(&body);
    json_t *j =
        method ? answer(request(&c, method, path.data, body.len ? body.data : NULL, &resp), &resp)
               : NULL;
    if (j) {
        if (strcmp(c.cmd, "ls") == 0)
            rc = cmd_ls(&c, j);
        else if (strcmp(c.cmd, "agents") == 0)
            rc = cmd_agents(&c, j);
        else if (strcmp(c.cmd, "rm") == 0)
            rc = cmd_rm(&c, j);
        else if (strcmp(c.cmd, "usage") == 0)
            rc = cmd_usage(&c, j);
        else
            rc = cmd_record(&c, j);
        json_decref(j);
    }
    par_buf_free(&own), par_buf_free(&path), par_buf_free(&body), par_buf_free(&resp);
    return rc;
}
