/*
 * runtime/io.c — see io.h. Forwards only: the supervisor (loader/) and the
 * registry poller (registry/) keep their state and their locks.
 */
#include "runtime/io.h"

#include <assert.h>

#include "loader/supervisor.h"

int par__runtime_io_attach(par_runtime_t *rt)
{
    return rt->super ? par_super_attach(rt->super) : -1;
}

void par__runtime_io_poll(par_runtime_t *rt)
{
    assert(rt->super != NULL);
    par_super_poll(rt->super);
}

int par__runtime_io_due(par_runtime_t *rt)
{
    assert(rt->super != NULL);
    return par_super_maintenance_due(rt->super);
}

void par__runtime_io_detach(par_runtime_t *rt)
{
    assert(rt->super != NULL);
    par_super_detach(rt->super);
}

int par__runtime_pool_json(par_pkgver_t *pv, json_t *o)
{
    if (pv->pool == NULL)
        return 0;
    json_object_set_new(o, "workers", par_pool_describe(pv->pool));
    json_object_set_new(o, "restarts", json_integer(par_pool_restarts(pv->pool)));
    par_pool_stats_t st;
    par_pool_stats(pv->pool, &st);
    json_object_set_new(o, "health", json_string(st.crash_loop ? "crash_loop" : "ok"));
    json_object_set_new(o, "crashes_in_row", json_integer(st.crashes_in_row));
    json_object_set_new(o, "sandbox", par_pool_sandbox(pv->pool));
    return 1;
}
