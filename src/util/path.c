/*
 * util/path.c — see path.h.
 */
#include "util/path.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Appends component `c` (length n) to the normalised absolute path `out`. */
static void push_component(char *out, size_t *len, const char *c, size_t n)
{
    if (n == 0 || (n == 1 && c[0] == '.'))
        return;
    if (n == 2 && c[0] == '.' && c[1] == '.') {
        while (*len > 1 && out[*len - 1] != '/')
            (*len)--;
        if (*len > 1)
            (*len)--; /* the slash before the dropped component */
        out[*len] = '\0';
        return;
    }
    if (*len > 1)
        out[(*len)++] = '/';
    memcpy(out + *len, c, n);
    *len += n;
    out[*len] = '\0';
}

static void push_all(char *out, size_t *len, const char *p)
{
    while (*p) {
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        push_component(out, len, p, n);
        p += n;
    }
}

char *par_path_absolute(const char *base, const char *p)
{
    char cwd[PATH_MAX];
    if (p == NULL)
        return NULL;
    if (p[0] != '/' && base == NULL) {
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            return NULL;
        base = cwd;
    }
    size_t cap = (p[0] == '/' ? 0 : strlen(base)) + strlen(p) + 3;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    size_t len = 1;
    out[0] = '/';
    out[1] = '\0';
    if (p[0] != '/')
        push_all(out, &len, base);
    push_all(out, &len, p);
    return out;
}

char *par_path_dirname(const char *abs)
{
    const char *slash = strrchr(abs, '/');
    size_t n = slash == NULL || slash == abs ? 1 : (size_t)(slash - abs);
    char *d = malloc(n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, slash == NULL ? "/" : abs, n);
    d[n] = '\0';
    return d;
}

int par_mkdir_p(const char *path, unsigned mode)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s", path) >= sizeof(tmp))
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST ? -1 : 0;
}
