/*
 * http/mcp.h — what the files of the MCP endpoint share (docs/protocols.md
 * "MCP"):
 *
 *   mcp.c          the Streamable HTTP transport: POST/GET/DELETE /mcp and
 *                  /agents/{id}/mcp, JSON-RPC, lifecycle, tools/call, tasks
 *   mcp_tools.c    agents as tools: names, descriptions, input schemas,
 *                  tool results from run answers, tasks from runs
 *   mcp_session.c  Mcp-Session-Id sessions
 *
 * Loop threads only, except mcp_session.c (thread-safe). Nothing outside
 * src/http/ includes this.
 */
#ifndef PAR_HTTP_MCP_H
#define PAR_HTTP_MCP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <par/par.h>

/* JSON-RPC 2.0 error codes, and MCP's own */
#define MCP_PARSE_ERROR (-32700)
#define MCP_INVALID_REQUEST (-32600)
#define MCP_METHOD_NOT_FOUND (-32601)
#define MCP_INVALID_PARAMS (-32602)
#define MCP_INTERNAL_ERROR (-32603)
#define MCP_SESSION_NOT_FOUND (-32001)

struct par_http_exchange;
struct par_run;

/* ---- mcp_session.c ---- */

/* Records session `id` (32 bytes) for its caller and scope ("" or a package
 * name). PAR_OK or PAR_E_NO_MEMORY. */
int par__mcp_session_new(const char *id, const char *version, const char *subject,
                         const char *tenant, const char *scope, int64_t now_ms);
/* The session when it exists and is the caller's on this scope (its
 * negotiated version into version[16], its idle clock restarted); else
 * PAR_E_NOT_FOUND. */
int par__mcp_session_use(const char *id, size_t len, const char *subject, const char *tenant,
                         const char *scope, int64_t now_ms, char version[16]);
/* Ends the caller's session: PAR_OK, or PAR_E_NOT_FOUND. */
int par__mcp_session_end(const char *id, size_t len, const char *subject, const char *tenant,
                         const char *scope);

/* ---- mcp_tools.c ---- */

/* The tool name of an agent id ('/' becomes '_', which ids never hold) into
 * out[PAR_ID_MAX + 1]; and back. The agent id of a name, 0; -1 when the name
 * cannot be one. */
void par__mcp_tool_name(const char *agent_id, char *out);
int par__mcp_agent_id(const char *name, char *out);
/* {"tools":[…]}: the public agents the caller may invoke, of package `scope`
 * only unless it is "", in the runtime's routing order: at most `max`,
 * skipping the first `from`; *more is 1 when tools follow. NULL when out
 * of memory. */
json_t *par__mcp_tools_list(struct par_http_exchange *x, const char *scope, size_t from, size_t max,
                            int *more);
/* Whether the caller may call agent `id` as a tool on this scope (a public
 * agent it may invoke). */
int par__mcp_tool_visible(struct par_http_exchange *x, const char *scope, const char *id);
/* The CallToolResult of an ended run: its output as text and, when an
 * object, structuredContent; a failure as isError with PAR's error name.
 * NULL when out of memory or the answer cannot be read (*rc says). */
json_t *par__mcp_tool_result(struct par_run *r, int *rc);
/* The MCP Task of a run (taskId = run id), for tasks/get, tasks/list,
 * tasks/cancel and CreateTaskResult. NULL when out of memory. */
json_t *par__mcp_task(struct par_run *r, uint32_t retention_s);
json_t *par__mcp_task_of(json_t *run_json, uint32_t retention_s);

#endif
