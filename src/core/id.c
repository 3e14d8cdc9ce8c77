/*
 * core/id.c — see id.h.
 */
#include "core/id.h"

#include <stdio.h>
#include <string.h>

int par_id_valid_name(const char *s, size_t n)
{
    if (s == NULL || n == 0 || n > PAR_ID_PART_MAX || !(s[0] >= 'a' && s[0] <= 'z'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

static int valid_version(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '+' || s[i] == '-'))
            return 0;
    return 1;
}

int par_agent_id_parse(const char *s, size_t len, par_agent_id_t *out)
{
    memset(out, 0, sizeof(*out));
    const char *end = s + len;
    const char *slash = memchr(s, '/', len);
    const char *head_end = slash ? slash : end;
    const char *at = memchr(s, '@', (size_t)(head_end - s));
    out->name = s;
    out->name_len = (size_t)((at ? at : head_end) - s);
    if (!par_id_valid_name(out->name, out->name_len))
        return -1;
    if (at) {
        out->version = at + 1;
        out->version_len = (size_t)(head_end - out->version);
        if (!valid_version(out->version, out->version_len))
            return -1;
    }
    if (slash) {
        out->sub = slash + 1;
        out->sub_len = (size_t)(end - out->sub);
        if (!par_id_valid_name(out->sub, out->sub_len))
            return -1;
    }
    return 0;
}

int par_id_path_check(const char *s, size_t len, size_t max, char *why, size_t cap)
{
    if (len == 0) {
        snprintf(why, cap, "is empty");
        return -1;
    }
    if (len > max) {
        snprintf(why, cap, "is %zu bytes long; the limit is %zu", len, max);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(why, cap, "holds the control byte 0x%02x at byte %zu", c, i);
            return -1;
        }
    }
    return 0;
}
