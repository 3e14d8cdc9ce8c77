/*
 * http/a2a.c — every public agent as an A2A agent (docs/protocols.md "A2A"):
 *
 *   GET  /.well-known/agent-card.json              the runtime's catalog of cards
 *   GET  /agents/{id}/.well-known/agent-card.json  the agent's card
 *   POST /a2a/{id}                                 JSON-RPC 2.0, v1.0 and v0.3 names
 *   POST /a2a/{id}/message:send | message:stream   HTTP+JSON
 *   GET  /a2a/{id}/tasks[/{task_id}]               HTTP+JSON
 *   POST /a2a/{id}/tasks/{task_id}:cancel | :subscribe
 *
 * A task is a run (runtime/runs.h): a message starts one, its id is the
 * task id, its owner decides who sees it, its events are streamed through
 * http/sse.c with a2a_map.c's framer. The routes need what invoke needs
 * (agents:invoke for the agent); the task routes check it here, since their
 * path holds the task id too. Loop thread only; no state between requests.
 * It must never block the loop or answer a protocol error with anything
 * but the protocol's own codes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/a2a.h"
#include "runtime/runs.h"

/* ---- answering ------------------------------------------------------------------ */

/* Sends `doc` (consumed) with `http` and logs it; returns 0. */
static int reply(par_http_exchange_t *x, int http, json_t *doc, const char *err)
{
    par__http_send_json(x->req, doc ? http : 500, doc, x->rid);
    par__http_access_log(x->loop->http, x->req, x->m.route->label, doc ? http : 500, x->rid, NULL,
                         x->t0, err);
    return 0;
}

/* ---- cards ------------------------------------------------------------------------ */

/* "scheme://host" of the request as its client sees it (X-Forwarded-Proto
 * and Host, as a reverse proxy passes them). */
static void base_url(par_http_exchange_t *x, char *out, size_t cap)
{
    h2o_iovec_t proto = par__http_header(x->req, H2O_STRLIT("x-forwarded-proto"));
    int https = proto.base ? h2o_memis(proto.base, proto.len, H2O_STRLIT("https"))
                           : x->loop->http->tls != NULL;
    h2o_iovec_t host = x->req->authority;
    int ok = host.len > 0 && host.len < 256;
    for (size_t i = 0; ok && i < host.len; i++)
        ok = host.base[i] > 32 && host.base[i] < 127 && host.base[i] != '/' && host.base[i] != '"';
    snprintf(out, cap, "%s://%.*s", https ? "https" : "http", ok ? (int)host.len : 9,
             ok ? host.base : "localhost");
}

static json_t *interfaces(const char *url)
{
    return json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:s},{s:s,s:s,s:s}]", "url", url, "protocolBinding",
                     "JSONRPC", "protocolVersion", "1.0", "url", url, "protocolBinding",
                     "HTTP+JSON", "protocolVersion", "1.0", "url", url, "protocolBinding",
                     "JSONRPC", "protocolVersion", "0.3");
}

/* The agent's declared skills (metadata.par.skills for the main agent, its
 * entry's `skills` for a sub-agent or export) in its card, each with its
 * tags (A2A requires them; [] when not declared). 0, or -1 when out of
 * memory. */
static int declared_skills(json_t *card, const par_export_t *e)
{
    if (e->skills_json == NULL)
        return 0;
    json_t *skills = json_loads(e->skills_json, 0, NULL);
    size_t i;
    json_t *s;
    int rc = skills ? 0 : -1;
    json_array_foreach(skills, i, s) if (json_object_get(s, "tags") == NULL) rc |=
        json_object_set_new(s, "tags", json_array());
    if (rc == 0)
        return json_object_set_new(card, "skills", skills);
    json_decref(skills);
    return -1;
}

/* The card of a public agent. */
static json_t *card_json(par_http_exchange_t *x, const par_route_t *r)
{
    const par_manifest_t *m = r->pv->manifest;
    const par_export_t *e = &m->exports[r->export_idx];
    const char *desc = e->description[0] ? e->description : m->description;
    const char *name = e->name[0] ? r->id : m->display_name[0] ? m->display_name : r->id;
    char base[300], url[600];
    base_url(x, base, sizeof(base));
    snprintf(url, sizeof(url), "%s/a2a/%s", base, r->id);
    json_t *card = json_pack(
        "{s:s,s:s,s:s,s:o,s:{s:b,s:b,s:b},s:[s,s],s:[s,s],s:[{s:s,s:s,s:s,s:[s],s:[s,s],s:[s,s]}],"
        "s:s,s:s,s:s,s:[{s:s,s:s}]}",
        "name", name, "description", desc[0] ? desc : name, "version", r->pv->version,
        "supportedInterfaces", interfaces(url), "capabilities", "streaming", 1, "pushNotifications",
        0, "extendedAgentCard", 1, "defaultInputModes", "text/plain", "application/json",
        "defaultOutputModes", "application/json", "text/plain", "skills", "id", r->id, "name", name,
        "description", desc[0] ? desc : name, "tags", "par", "inputModes", "text/plain",
        "application/json", "outputModes", "application/json", "text/plain",
        /* what a v0.3 client reads */
        "url", url, "preferredTransport", "JSONRPC", "protocolVersion", "0.3.0",
        "additionalInterfaces", "url", url, "transport", "JSONRPC");
    if (card && (json_object_set_new(card, "supportsAuthenticatedExtendedCard", json_true()) != 0 ||
                 declared_skills(card, e) != 0)) {
        json_decref(card);
        return NULL;
    }
    par_auth_t *a = x->loop->http->opts.auth;
    if (card && par_auth_enabled(a)) {
        int rc = json_object_set_new(
            card, "securitySchemes",
            json_pack("{s:{s:{s:s,s:s}}}", "bearer", "httpAuthSecurityScheme", "scheme", "Bearer",
                      "description", "an OIDC access token or a PAR API key"));
        rc |= json_object_set_new(card, "securityRequirements",
                                  json_pack("[{s:{s:{s:[]}}}]", "schemes", "bearer", "list"));
        rc |= json_object_set_new(card, "security", json_pack("[{s:[]}]", "bearer"));
        if (rc != 0) {
            json_decref(card);
            return NULL;
        }
    }
    return card;
}

/* The public agent `id` (referenced table in *t), or NULL. */
static const par_route_t *public_agent(par_http_exchange_t *x, par_table_t **t)
{
    *t = par__table_get(x->loop->http->rt);
    const par_route_t *r = par__table_find(*t, x->m.var, x->m.var_len);
    return r && r->pv->manifest->exports[r->export_idx].is_public ? r : NULL;
}

json_t *par__a2a_card(par_http_exchange_t *x)
{
    par_table_t *t;
    const par_route_t *r = public_agent(x, &t);
    json_t *card = r ? card_json(x, r) : NULL;
    par__table_unref(t);
    return card;
}

/* The one string property of `props` named in `names` (all of them when
 * NULL), or NULL when there is not exactly one. */
static const char *only_string(json_t *props, json_t *names)
{
    const char *k, *found = NULL;
    json_t *v;
    int n = 0;
    json_object_foreach(props, k, v)
    {
        const char *type = json_string_value(json_object_get(v, "type"));
        size_t i;
        json_t *name;
        int named = names == NULL;
        json_array_foreach(names, i, name) named |=
            json_is_string(name) && strcmp(json_string_value(name), k) == 0;
        if (named && type && strcmp(type, "string") == 0 && ++n == 1)
            found = k;
    }
    return n == 1 ? found : NULL;
}

void par__a2a_text_key(par_http_exchange_t *x, char *key, size_t cap)
{
    snprintf(key, cap, "text");
    par_table_t *t;
    const par_route_t *r = public_agent(x, &t);
    const par_export_t *e = r ? &r->pv->manifest->exports[r->export_idx] : NULL;
    if (e && e->input_schema_json) {
        json_t *s = json_loads(e->input_schema_json, 0, NULL);
        json_t *props = json_object_get(s, "properties");
        json_t *req = json_object_get(s, "required");
        const char *k =
            json_is_array(req) && json_array_size(req) == 1 ? only_string(props, req) : NULL;
        if (k == NULL)
            k = only_string(props, NULL);
        if (k && strlen(k) < cap)
            snprintf(key, cap, "%s", k);
        json_decref(s);
    }
    par__table_unref(t);
}

int par__a2a_known(par_http_exchange_t *x, const char *id, size_t len)
{
    par_table_t *t = par__table_get(x->loop->http->rt);
    const par_route_t *r = par__table_find(t, id, len);
    int ok = r && r->pv->manifest->exports[r->export_idx].is_public;
    par__table_unref(t);
    if (ok)
        return 1;
    /* an unknown or private agent has no A2A endpoint, as it has no invoke */
    char msg[PAR_ID_MAX + 32];
    int n = snprintf(msg, sizeof(msg), "no agent '%.*s'", (int)(len > 200 ? 200 : len), id);
    par__http_send_error(x->req, PAR_E_AGENT_NOT_FOUND, msg, (size_t)n, x->rid);
    par__http_access_log(x->loop->http, x->req, x->m.route->label, 404, x->rid, NULL, x->t0,
                         "agent_not_found");
    return 0;
}

int par__http_on_a2a_card(par_http_exchange_t *x)
{
    par_table_t *t;
    const par_route_t *r = public_agent(x, &t);
    json_t *card = r ? card_json(x, r) : NULL;
    par__table_unref(t);
    if (r == NULL) {
        par__http_send_error(x->req, PAR_E_AGENT_NOT_FOUND, H2O_STRLIT("no such agent"), x->rid);
        par__http_access_log(x->loop->http, x->req, x->m.route->label, 404, x->rid, NULL, x->t0,
                             "agent_not_found");
        return 0;
    }
    return reply(x, 200, card, NULL);
}

int par__http_on_a2a_catalog(par_http_exchange_t *x)
{
    par_table_t *t = par__table_get(x->loop->http->rt);
    char base[300], url[600];
    base_url(x, base, sizeof(base));
    json_t *agents = json_array();
    for (size_t i = 0; agents && i < t->count; i++) {
        const par_route_t *r = &t->routes[i];
        if (strchr(r->id, '@') || !r->pv->manifest->exports[r->export_idx].is_public)
            continue;
        /* a caller sees the agents it may invoke, as in GET /agents */
        if (x->loop->who && !par_perms_allow_invoke(&x->loop->who->perms, r->id, strlen(r->id)))
            continue;
        snprintf(url, sizeof(url), "%s/agents/%s/.well-known/agent-card.json", base, r->id);
        const par_manifest_t *m = r->pv->manifest;
        const par_export_t *e = &m->exports[r->export_idx];
        if (json_array_append_new(agents,
                                  json_pack("{s:s,s:s,s:s,s:s}", "id", r->id, "description",
                                            e->description[0] ? e->description : m->description,
                                            "version", r->pv->version, "agentCardUrl", url)) != 0) {
            json_decref(agents);
            agents = NULL;
        }
    }
    par__table_unref(t);
    json_t *doc = agents ? json_pack("{s:s,s:s,s:o}", "name", "PAR", "description",
                                     "the A2A agents this runtime serves; each has its own card",
                                     "agents", agents)
                         : NULL;
    return reply(x, 200, doc, NULL);
}
