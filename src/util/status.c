/*
 * util/status.c — names and descriptions for par_status_t (par/par.h X-macro).
 * Any thread.
 */
#include <par/par.h>

#define STATUS_ROW(name, http, str, desc) {http, str, desc},
static const struct {
    int http;
    const char *name;
    const char *desc;
} status_table[] = {PAR_STATUS_MAP(STATUS_ROW)};
#undef STATUS_ROW

const char *par_strerror(int status)
{
    if (status < 0 || status >= PAR_STATUS_COUNT)
        return "unknown status";
    return status_table[status].desc;
}

const char *par_status_name(int status)
{
    if (status < 0 || status >= PAR_STATUS_COUNT)
        return "internal_error";
    return status_table[status].name;
}

int par_status_http(int status)
{
    if (status < 0 || status >= PAR_STATUS_COUNT)
        return 500;
    return status_table[status].http;
}
