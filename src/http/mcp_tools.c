/*
 * http/mcp_tools.c — agents as MCP tools (docs/protocols.md "MCP"): their
 * names, descriptions and input schemas, the tool results of their runs,
 * and runs as MCP tasks.
 *
 * A tool's name is its agent id with '/' as '_' (agent ids are
 * [a-z][a-z0-9-]* parts joined by '/', so the mapping is reversible and the
 * name fits MCP's [A-Za-z0-9_.-]). Its description and inputSchema come from
 * the file agent.yaml's `mcp.config_file` names (pixell-kit's builder packs
 * that file at that path) when it describes tools: a "tools" array whose
 * entries name the agent by id, export name or tool name, or one top-level
 * "description"/"inputSchema"; a file of another shape (an "mcpServers"
 * client configuration) describes nothing here. Else the agent's
 * input_schema from agent.yaml, else its description and a permissive
 * object schema.
 *
 * Callers: http/mcp.c on the loop threads; reads the MCP file (a small file)
 * on the loop thread at tools/list. Holds no state.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "http/internal.h"
#include "http/mcp.h"
#include "runtime/runs.h"

#define MCP_JSON_MAX (256u << 10)

void par__mcp_tool_name(const char *agent_id, char *out)
{
    size_t i = 0;
    for (; agent_id[i] && i < PAR_ID_MAX; i++)
        out[i] = agent_id[i] == '/' ? '_' : agent_id[i];
    out[i] = '\0';
}

int par__mcp_agent_id(const char *name, char *out)
{
    size_t i = 0;
    for (; name[i]; i++) {
        char c = name[i];
        if (i >= PAR_ID_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return -1;
        out[i] = c == '_' ? '/' : c;
    }
    out[i] = '\0';
    return i ? 0 : -1;
}

/* The entry of mcp.json describing this export, or NULL. */
static json_t *mcp_json_entry(json_t *doc, const char *id, const char *tool, const char *export)
{
    json_t *tools = json_object_get(doc, "tools");
    if (!json_is_array(tools))
        return json_is_object(json_object_get(doc, "inputSchema")) && export[0] == '\0' ? doc
                                                                                        : NULL;
    size_t i;
    json_t *e;
    json_array_foreach(tools, i, e)
    {
        const char *n = json_string_value(json_object_get(e, "name"));
        if (n &&
            (strcmp(n, id) == 0 || strcmp(n, tool) == 0 || (export[0] && strcmp(n, export) == 0)))
            return e;
    }
    /* a package with one tool and one agent: that tool is the main agent's */
    return json_array_size(tools) == 1 && export[0] == '\0' ? json_array_get(tools, 0) : NULL;
}

/* The package's MCP file (agent.yaml's mcp.config_file), or NULL (not
 * declared, absent, unreadable, not an object). */
static json_t *mcp_json_load(const par_pkgver_t *pv)
{
    char path[4096];
    const char *f = pv->manifest->mcp_config_file;
    if (pv->root == NULL || f == NULL ||
        snprintf(path, sizeof(path), "%s/%s", pv->root, f) >= (int)sizeof(path))
        return NULL;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)MCP_JSON_MAX)
        return NULL; /* a larger file describes nothing: the fallbacks apply */
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static json_t *tool_json(const par_route_t *r, json_t *mcp)
{
    const par_manifest_t *m = r->pv->manifest;
    const par_export_t *e = &m->exports[r->export_idx];
    char name[PAR_ID_MAX + 1];
    par__mcp_tool_name(r->id, name);
    json_t *entry = mcp ? mcp_json_entry(mcp, r->id, name, e->name) : NULL;
    json_t *schema = entry ? json_object_get(entry, "inputSchema") : NULL;
    const char *desc = entry ? json_string_value(json_object_get(entry, "description")) : NULL;
    if (desc == NULL)
        desc = e->description[0] ? e->description : m->description;
    const char *title = e->name[0] ? e->name : m->display_name;
    json_t *t =
        json_pack("{s:s, s:s, s:s, s:{s:s}}", "name", name, "title", title[0] ? title : name,
                  "description", desc, "execution", "taskSupport", "optional");
    if (t == NULL)
        return NULL;
    json_t *declared = NULL; /* the agent's input_schema in agent.yaml */
    if (e->input_schema_json) {
        declared = json_loads(e->input_schema_json, 0, NULL);
        if (declared == NULL || (json_object_get(declared, "type") == NULL &&
                                 json_object_set_new(declared, "type", json_string("object")))) {
            json_decref(declared); /* out of memory */
            json_decref(t);
            return NULL;
        }
    }
    if (json_is_object(schema) && json_is_string(json_object_get(schema, "type")))
        json_object_set(t, "inputSchema", schema);
    else if (declared)
        json_object_set(t, "inputSchema", declared);
    else
        json_object_set_new(t, "inputSchema",
                            json_pack("{s:s, s:b}", "type", "object", "additionalProperties", 1));
    json_decref(declared);
    if (json_object_get(t, "inputSchema") == NULL) {
        json_decref(t);
        return NULL;
    }
    return t;
}

static int visible(par_http_exchange_t *x, const par_route_t *r, const char *scope)
{
    if (strchr(r->id, '@') || !r->pv->manifest->exports[r->export_idx].is_public)
        return 0;
    if (scope[0] && strcmp(r->pv->name, scope) != 0)
        return 0;
    return x->loop->who == NULL ||
           par_perms_allow_invoke(&x->loop->who->perms, r->id, strlen(r->id));
}

int par__mcp_tool_visible(par_http_exchange_t *x, const char *scope, const char *id)
{
    par_table_t *t = par__table_get(x->loop->http->rt);
    const par_route_t *r = par__table_find(t, id, strlen(id));
    int ok = r && visible(x, r, scope);
    par__table_unref(t);
    return ok;
}

json_t *par__mcp_tools_list(par_http_exchange_t *x, const char *scope, size_t from, size_t max,
                            int *more)
{
    par_table_t *t = par__table_get(x->loop->http->rt);
    json_t *a = json_array();
    const par_pkgver_t *pv = NULL;
    json_t *mcp = NULL;
    size_t seen = 0;
    *more = 0;
    for (size_t i = 0; a && i < t->count; i++) {
        const par_route_t *r = &t->routes[i];
        if (!visible(x, r, scope) || seen++ < from)
            continue;
        if (json_array_size(a) == max) {
            *more = 1;
            break;
        }
        if (r->pv != pv) {
            json_decref(mcp);
            pv = r->pv;
            mcp = mcp_json_load(pv);
        }
        json_t *tool = tool_json(r, mcp);
        if (tool == NULL || json_array_append_new(a, tool) != 0) {
            json_decref(a);
            a = NULL;
        }
    }
    json_decref(mcp);
    par__table_unref(t);
    return a ? json_pack("{s:o}", "tools", a) : NULL;
}

/* {"content":[{"type":"text","text":…}], "isError":…} plus what's given. */
static json_t *text_result(const char *text, int is_error)
{
    return json_pack("{s:[{s:s, s:s}], s:b}", "content", "type", "text", "text", text, "isError",
                     is_error);
}

json_t *par__mcp_tool_result(par_run_t *r, int *rc)
{
    par_buf_t b;
    par_buf_init(&b, 0);
    int status = PAR_OK;
    *rc = par_run_answer(r, &b, &status);
    json_t *ans = *rc == PAR_OK ? json_loadb(b.data, b.len, 0, NULL) : NULL;
    par_buf_free(&b);
    if (ans == NULL) {
        if (*rc == PAR_OK)
            *rc = PAR_E_NO_MEMORY;
        return NULL;
    }
    json_t *res;
    if (status != PAR_OK) {
        const char *name = json_string_value(json_object_get(ans, "error"));
        const char *msg = json_string_value(json_object_get(ans, "message"));
        char *text = NULL;
        if (asprintf(&text, "%s: %s", name ? name : par_status_name(status), msg ? msg : "") < 0)
            text = NULL;
        res = text ? text_result(text, 1) : NULL;
        free(text);
        if (res)
            json_object_set(res, "structuredContent", ans);
    } else {
        json_t *out = json_object_get(ans, "output");
        char *text = json_is_string(out)
                         ? strdup(json_string_value(out))
                         : json_dumps(out ? out : json_null(), JSON_ENCODE_ANY | JSON_COMPACT);
        res = text ? text_result(text, 0) : NULL;
        free(text);
        if (res && json_is_object(out))
            json_object_set(res, "structuredContent", out);
    }
    json_decref(ans);
    if (res == NULL)
        *rc = PAR_E_NO_MEMORY;
    return res;
}

static const char *task_status(const char *run_status)
{
    if (run_status == NULL || strcmp(run_status, "queued") == 0 ||
        strcmp(run_status, "running") == 0)
        return "working";
    if (strcmp(run_status, "succeeded") == 0)
        return "completed";
    if (strcmp(run_status, "cancelled") == 0)
        return "cancelled";
    return "failed"; /* failed, interrupted */
}

json_t *par__mcp_task_of(json_t *j, uint32_t retention_s)
{
    const char *created = json_string_value(json_object_get(j, "created_at"));
    const char *upd = json_string_value(json_object_get(j, "ended_at"));
    if (upd == NULL)
        upd = json_string_value(json_object_get(j, "started_at"));
    json_t *t =
        json_pack("{s:O?, s:s, s:I, s:s, s:s, s:i}", "taskId", json_object_get(j, "run_id"),
                  "status", task_status(json_string_value(json_object_get(j, "status"))), "ttl",
                  (json_int_t)retention_s * 1000, "createdAt", created ? created : "",
                  "lastUpdatedAt", upd ? upd : (created ? created : ""), "pollInterval", 500);
    json_t *err = json_object_get(j, "error");
    const char *name = json_string_value(json_object_get(err, "error"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    if (t && name) {
        char *text = NULL;
        if (asprintf(&text, "%s: %s", name, msg ? msg : "") >= 0) {
            json_object_set_new(t, "statusMessage", json_string(text));
            free(text);
        }
    }
    return t;
}

json_t *par__mcp_task(par_run_t *r, uint32_t retention_s)
{
    json_t *j = par_run_json(r);
    json_t *t = j ? par__mcp_task_of(j, retention_s) : NULL;
    json_decref(j);
    return t;
}
