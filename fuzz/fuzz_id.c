/*
 * fuzz/fuzz_id.c — libFuzzer harness for agent ids as they come from request
 * paths (core/id.c) and for the invoke authorization that reads them
 * (auth/permissions.c). An id is the first thing an anonymous client puts in
 * a URL (/agents/<id>/invoke); the HTTP server's own path splitting lives in
 * h2o callbacks and is covered by the e2e tests.
 *
 * Checks on every id that parses: the parts are slices of the input in order
 * and put back together give the input; the name matches ^[a-z][a-z0-9-]*$,
 * the version [0-9A-Za-z.+-]+, the sub-agent name the name's rule; no NUL or
 * control byte got through. Then authorization: agents:invoke allows it,
 * agents:invoke:<name> allows it, agents:invoke:<name>/<sub> allows a sub-agent
 * id, a permission for another package does not.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auth/permissions.h"
#include "fuzz_check.h"
#include "core/id.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int name_ok(const char *s, size_t n)
{
    if (n == 0 || s[0] < 'a' || s[0] > 'z')
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

static int version_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '+' || s[i] == '-'))
            return 0;
    return 1;
}

static int allowed(const char *perm, const char *id, size_t len)
{
    par_perms_t p;
    memset(&p, 0, sizeof(p));
    char err[256];
    FUZZ_CHECK(par_perms_add(&p, perm, err, sizeof(err)) == 0, "%s refused: %s", perm, err);
    int ok = par_perms_allow_invoke(&p, id, len);
    par_perms_free(&p);
    return ok;
}

static void check_authz(const char *s, size_t len, const par_agent_id_t *id)
{
    char perm[PAR_PERM_PATTERN_MAX + 64];
    FUZZ_CHECK(allowed(PAR_PERM_INVOKE, s, len), "agents:invoke refuses a valid id");
    if (id->name_len > PAR_PERM_PATTERN_MAX - 40)
        return;
    snprintf(perm, sizeof(perm), PAR_PERM_INVOKE ":%.*s", (int)id->name_len, id->name);
    FUZZ_CHECK(allowed(perm, s, len), "%s refuses its own package", perm);
    snprintf(perm, sizeof(perm), PAR_PERM_INVOKE ":%.*sx", (int)id->name_len, id->name);
    FUZZ_CHECK(!allowed(perm, s, len), "%s allows another package", perm);
    if (id->sub && id->name_len + id->sub_len < PAR_PERM_PATTERN_MAX - 40) {
        snprintf(perm, sizeof(perm), PAR_PERM_INVOKE ":%.*s/%.*s", (int)id->name_len, id->name,
                 (int)id->sub_len, id->sub);
        FUZZ_CHECK(allowed(perm, s, len), "%s refuses its own sub-agent", perm);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size heap copy: a read past the id is an ASan report */
    char *s = malloc(size ? size : 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    par_agent_id_t id;
    memset(&id, 0xA5, sizeof(id));
    if (par_agent_id_parse(s, size, &id) == 0) {
        FUZZ_CHECK(id.name == s, "name does not start the id");
        FUZZ_CHECK(name_ok(id.name, id.name_len), "name '%.*s'", (int)id.name_len, id.name);
        size_t at = id.name_len;
        if (id.version) {
            FUZZ_CHECK(at < size && s[at] == '@' && id.version == s + at + 1, "version slice");
            FUZZ_CHECK(version_ok(id.version, id.version_len), "version");
            at += 1 + id.version_len;
        }
        if (id.sub) {
            FUZZ_CHECK(at < size && s[at] == '/' && id.sub == s + at + 1, "sub slice");
            FUZZ_CHECK(name_ok(id.sub, id.sub_len), "sub '%.*s'", (int)id.sub_len, id.sub);
            at += 1 + id.sub_len;
        }
        FUZZ_CHECK(at == size, "parts cover %zu of %zu bytes", at, size);
        check_authz(s, size, &id);
    }
    free(s);
    return 0;
}
