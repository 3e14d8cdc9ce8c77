/*
 * http/mcp_session.c — the MCP sessions of the process (Mcp-Session-Id,
 * docs/protocols.md "MCP"): created by initialize, required by every later
 * message, ended by DELETE or after MCP_SESSION_IDLE_MS without a message.
 *
 * A session records who opened it (subject and tenant: nobody else may use
 * it), the endpoint's scope ("" for /mcp, a package name for
 * /agents/{id}/mcp) and the negotiated protocol version. It holds no run:
 * tool calls and tasks are runs, owned by the caller as every run is.
 *
 * Callers: http/mcp.c on the loop threads. One mutex guards the table; no
 * function blocks or calls out while holding it. The table is bounded
 * (MCP_SESSIONS_MAX): when full, the longest idle session is ended.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "http/mcp.h"

#define MCP_SESSIONS_MAX 4096
#define MCP_SESSION_IDLE_MS (60 * 60 * 1000)

typedef struct session {
    char id[33];
    char version[16];
    char *subject, *tenant, *scope;
    int64_t last_ms;
} session_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static session_t *table[MCP_SESSIONS_MAX];
static size_t count;

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static void session_free(session_t *s)
{
    if (s == NULL)
        return;
    free(s->subject);
    free(s->tenant);
    free(s->scope);
    free(s);
}

static void remove_at_locked(size_t i)
{
    session_free(table[i]);
    table[i] = table[--count];
    table[count] = NULL;
}

static long find_locked(const char *id, size_t len)
{
    if (len != 32)
        return -1;
    for (size_t i = 0; i < count; i++)
        if (memcmp(table[i]->id, id, 32) == 0)
            return (long)i;
    return -1;
}

/* Ends idle sessions; with the table still full, the longest idle one. */
static void prune_locked(int64_t now)
{
    for (size_t i = 0; i < count;)
        if (now - table[i]->last_ms > MCP_SESSION_IDLE_MS)
            remove_at_locked(i);
        else
            i++;
    if (count < MCP_SESSIONS_MAX)
        return;
    size_t old = 0;
    for (size_t i = 1; i < count; i++)
        if (table[i]->last_ms < table[old]->last_ms)
            old = i;
    remove_at_locked(old);
}

int par__mcp_session_new(const char *id, const char *version, const char *subject,
                         const char *tenant, const char *scope, int64_t now_ms)
{
    session_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return PAR_E_NO_MEMORY;
    memcpy(s->id, id, 32);
    snprintf(s->version, sizeof(s->version), "%s", version);
    s->last_ms = now_ms;
    if ((subject && (s->subject = strdup(subject)) == NULL) ||
        (tenant && (s->tenant = strdup(tenant)) == NULL) || (s->scope = strdup(scope)) == NULL) {
        session_free(s);
        return PAR_E_NO_MEMORY;
    }
    pthread_mutex_lock(&lock);
    prune_locked(now_ms);
    table[count++] = s;
    pthread_mutex_unlock(&lock);
    return PAR_OK;
}

int par__mcp_session_use(const char *id, size_t len, const char *subject, const char *tenant,
                         const char *scope, int64_t now_ms, char version[16])
{
    int rc = PAR_E_NOT_FOUND;
    pthread_mutex_lock(&lock);
    long i = find_locked(id, len);
    if (i >= 0 && now_ms - table[i]->last_ms > MCP_SESSION_IDLE_MS) {
        remove_at_locked((size_t)i);
        i = -1;
    }
    if (i >= 0 && same(table[i]->subject, subject) && same(table[i]->tenant, tenant) &&
        strcmp(table[i]->scope, scope) == 0) {
        table[i]->last_ms = now_ms;
        memcpy(version, table[i]->version, 16);
        rc = PAR_OK;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int par__mcp_session_end(const char *id, size_t len, const char *subject, const char *tenant,
                         const char *scope)
{
    int rc = PAR_E_NOT_FOUND;
    pthread_mutex_lock(&lock);
    long i = find_locked(id, len);
    if (i >= 0 && same(table[i]->subject, subject) && same(table[i]->tenant, tenant) &&
        strcmp(table[i]->scope, scope) == 0) {
        remove_at_locked((size_t)i);
        rc = PAR_OK;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}
