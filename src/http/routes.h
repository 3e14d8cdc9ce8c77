/*
 * http/routes.h — the URL space of the HTTP API, written once (docs/api.md).
 *
 * Owns the route table: for each route its methods, its path pattern (a
 * literal, or a literal prefix, one variable part and a literal suffix), the
 * permission it needs, its metrics label, the message of its 405 and its
 * handler. Authentication (the permission), the id checks (http/check.c),
 * the metrics label (the access log) and dispatch all read the one match
 * par__http_route_match() makes per request.
 *
 * Called on the loop thread that owns the request (and by the unit tests);
 * the table is constant and the matcher is pure: it reads the method and the
 * normalized path, allocates nothing and never fails. It must never learn
 * about the runtime: handlers do that.
 */
#ifndef PAR_HTTP_ROUTES_H
#define PAR_HTTP_ROUTES_H

#include <stddef.h>
#include <stdint.h>

/* Methods, as a mask. HEAD is served like GET. */
enum {
    PAR_HTTP_GET = 1,
    PAR_HTTP_HEAD = 2,
    PAR_HTTP_POST = 4,
    PAR_HTTP_DELETE = 8,
    PAR_HTTP_OTHER = 16, /* any other method */
    PAR_HTTP_ANY = 31,
};

/* The variable part of a pattern. */
typedef enum par_http_var {
    PAR_HTTP_VAR_NONE = 0, /* the path is the literal prefix exactly */
    PAR_HTTP_VAR_ID,       /* "{id}": one byte or more, '/' allowed (sub-agent parts) */
    PAR_HTTP_VAR_NAME,     /* "{name}": one byte or more, no '/' */
    PAR_HTTP_VAR_TAIL,     /* "*": zero bytes or more, anything */
} par_http_var_t;

/* The permission a route needs once the caller is known (auth/auth.h). */
typedef enum par_http_need {
    PAR_HTTP_NEED_NOTHING = 0, /* a valid credential only */
    PAR_HTTP_NEED_ADMIN,       /* runtime:admin */
    PAR_HTTP_NEED_INVOKE,      /* agents:invoke for the variable part (an agent id) */
} par_http_need_t;

struct par_http_exchange; /* http/internal.h */

/* Answers the request, or takes it on. Returns 1 when it answered and the
 * caller should write the access log line (with the response's status), 0
 * when it wrote it itself or will when the answer comes. */
typedef int par_http_handler_fn(struct par_http_exchange *x);

typedef struct par_http_route {
    unsigned methods;     /* PAR_HTTP_* mask this route answers */
    const char *prefix;   /* literal start of the path */
    uint8_t prefix_len;   /* strlen(prefix) */
    uint8_t var;          /* par_http_var_t */
    uint8_t suffix_len;   /* strlen(suffix) */
    uint8_t pass;         /* on a method outside `methods`, try the next routes */
    const char *suffix;   /* literal end of the path after the variable part */
    const char *var_name; /* how the pattern shows the variable part: "{id}", "{name}", "*" */
    uint8_t need;         /* par_http_need_t */
    uint8_t cors;         /* answers browsers of http.cors.origins (http/cors.h) */
    const char *label;    /* metrics route label (obs/metrics.h) */
    const char *wrong;    /* the 405 message for a method outside `methods` */
    const char *id_what;  /* the variable is checked (http/check.c) as this, or NULL */
    par_http_handler_fn *handler;
} par_http_route_t;

typedef struct par_http_match {
    const par_http_route_t *route; /* the route that decided, or NULL: no route (404) */
    int wrong_method;              /* the path is route's but its methods are not: 405 */
    const char *var;               /* the variable part, in the path */
    size_t var_len;
} par_http_match_t;

/* The method's PAR_HTTP_* bit. */
unsigned par__http_method(const char *m, size_t len);

/* Matches a normalized path (percent-decoded, no query). Routes are tried in
 * table order; the first whose pattern matches decides: its handler when the
 * method is one of its methods, else 405 with its message, unless the route
 * passes methods it lacks to the routes after it. A path no route matches
 * yields route NULL (404, no permission needed); paths under /runtime always
 * match (the table ends them with catch-alls that answer 404), so that they
 * all need runtime:admin. */
void par__http_route_match(unsigned method, const char *path, size_t len, par_http_match_t *out);

/* The label to count a match under: its route's, or "other". */
const char *par__http_route_label(const par_http_match_t *m);

/* The permission a match needs. */
par_http_need_t par__http_route_need(const par_http_match_t *m);

/* The table, for tests and documentation. */
const par_http_route_t *par__http_routes(size_t *count);

/* Writes a route's pattern ("/agents/{id}/invoke") into `buf`. */
void par__http_route_pattern(const par_http_route_t *r, char *buf, size_t cap);

/* The handlers the table names (http/invoke.c, http/runs.c, http/admin.c, http/server.c). */
par_http_handler_fn par__http_on_invoke, par__http_on_agent, par__http_on_agents,
    par__http_on_metrics, par__http_on_health, par__http_on_ready, par__http_on_info,
    par__http_on_usage, par__http_on_packages, par__http_on_package, par__http_on_deploy,
    par__http_on_reload, par__http_on_remove, par__http_on_no_route, par__http_on_run_start,
    par__http_on_run_start_stream, par__http_on_run_start_wait, par__http_on_runs_list,
    par__http_on_run, par__http_on_run_stream, par__http_on_run_cancel, par__http_on_run_wait,
    par__http_on_mcp;
/* A2A (http/a2a.c, http/a2a_rpc.c) */
par_http_handler_fn par__http_on_a2a_card, par__http_on_a2a_catalog, par__http_on_a2a_rpc,
    par__http_on_a2a_rest_send, par__http_on_a2a_rest_get, par__http_on_a2a_rest_cancel,
    par__http_on_a2a_rest_subscribe, par__http_on_a2a_rest_push;

#endif
