/*
 * loader/pool.c — see pool.h.
 */
#include "loader/pool.h"

#include <assert.h>

#include <par/par.h>

int par_pool_core_refusal(int admit)
{
    switch (admit) {
    case PAR_ADMIT_FULL:
        return PAR_E_OVER_CAPACITY;
    case PAR_ADMIT_CRASH_LOOP:
        return PAR_E_UNAVAILABLE;
    default:
        return PAR_OK;
    }
}

void par_pool_core_init(par_pool_core_t *pc)
{
    if (pc->min_workers > pc->max_workers)
        pc->max_workers = pc->min_workers;
}

int par_pool_core_crash_loop(const par_pool_core_t *pc, int any_ready)
{
    return pc->crashes_in_row >= PAR_POOL_CRASH_LOOP_CRASHES && !any_ready;
}

int par_pool_core_admit(const par_pool_core_t *pc, int wants_slot, int worker_ready, int any_ready)
{
    int limited = wants_slot && pc->limit;
    if (limited && pc->dispatched >= pc->limit) {
        if (pc->q_len >= pc->queue_max)
            return PAR_ADMIT_FULL;
        worker_ready = 0; /* wait in the queue for a slot */
    }
    if (worker_ready)
        return PAR_ADMIT_DISPATCH;
    return par_pool_core_crash_loop(pc, any_ready) ? PAR_ADMIT_CRASH_LOOP : PAR_ADMIT_QUEUE;
}

void par_pool_core_take_slot(par_pool_core_t *pc, par_pool_ent_t *e)
{
    assert(!e->holds_slot);
    if (e->wants_slot && pc->limit) {
        e->holds_slot = 1;
        pc->dispatched++;
    }
}

void par_pool_core_release_slot(par_pool_core_t *pc, par_pool_ent_t *e)
{
    if (!e->holds_slot)
        return;
    assert(pc->dispatched > 0);
    e->holds_slot = 0;
    pc->dispatched--;
}

void par_pool_core_enqueue(par_pool_core_t *pc, par_pool_ent_t *e)
{
    e->next = NULL;
    if (pc->q_tail)
        pc->q_tail->next = e;
    else
        pc->q_head = e;
    pc->q_tail = e;
    pc->q_len++;
}

int par_pool_core_unqueue(par_pool_core_t *pc, par_pool_ent_t *e)
{
    for (par_pool_ent_t **pp = &pc->q_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp != e)
            continue;
        *pp = e->next;
        if (pc->q_tail == e)
            pc->q_tail = prev;
        assert(pc->q_len > 0);
        pc->q_len--;
        e->next = NULL;
        return 1;
    }
    return 0;
}

par_pool_ent_t *par_pool_core_next(par_pool_core_t *pc)
{
    par_pool_ent_t *e = pc->q_head;
    if (e == NULL || (e->wants_slot && pc->limit && pc->dispatched >= pc->limit))
        return NULL;
    pc->q_head = e->next;
    if (pc->q_head == NULL)
        pc->q_tail = NULL;
    assert(pc->q_len > 0);
    pc->q_len--;
    e->next = NULL;
    par_pool_core_take_slot(pc, e);
    return e;
}

par_pool_ent_t *par_pool_core_take_expired(par_pool_core_t *pc, int64_t now_ms)
{
    par_pool_ent_t *taken = NULL, **tail = &taken;
    pc->q_tail = NULL;
    for (par_pool_ent_t **pp = &pc->q_head; *pp;) {
        par_pool_ent_t *e = *pp;
        if (e->deadline_ms == 0 || e->deadline_ms > now_ms) {
            pc->q_tail = e;
            pp = &e->next;
            continue;
        }
        *pp = e->next;
        assert(pc->q_len > 0);
        pc->q_len--;
        e->next = NULL;
        *tail = e;
        tail = &e->next;
    }
    return taken;
}

par_pool_ent_t *par_pool_core_take_queue(par_pool_core_t *pc)
{
    par_pool_ent_t *taken = pc->q_head;
    pc->q_head = pc->q_tail = NULL;
    pc->q_len = 0;
    return taken;
}

int par_pool_core_grow(par_pool_core_t *pc, unsigned inflight)
{
    if (inflight < pc->concurrency || pc->live >= pc->max_workers || pc->want_spawn)
        return 0;
    pc->want_spawn = 1;
    return 1;
}

unsigned par_pool_core_spawn_count(par_pool_core_t *pc, int64_t now_ms)
{
    if (now_ms < pc->respawn_at_ms)
        return 0;
    unsigned want = pc->min_workers ? pc->min_workers : (pc->q_head ? 1 : 0);
    if (pc->want_spawn && pc->live < pc->max_workers && pc->live + 1 > want)
        want = pc->live + 1;
    pc->want_spawn = 0;
    if (want > pc->max_workers)
        want = pc->max_workers;
    return want > pc->live ? want - pc->live : 0;
}

void par_pool_core_spawn_failed(par_pool_core_t *pc, int64_t now_ms)
{
    pc->respawn_at_ms = now_ms + PAR_POOL_RESPAWN_RETRY_MS;
}

void par_pool_core_worker_up(par_pool_core_t *pc)
{
    pc->live++;
}

void par_pool_core_worker_down(par_pool_core_t *pc)
{
    assert(pc->live > 0);
    pc->live--;
}

int64_t par_pool_core_backoff_ms(unsigned crashes_in_row, unsigned rnd)
{
    if (crashes_in_row <= 1)
        return 0;
    int64_t backoff = 50ll << (crashes_in_row < 9 ? crashes_in_row - 2 : 7);
    if (backoff > PAR_POOL_MAX_BACKOFF_MS)
        backoff = PAR_POOL_MAX_BACKOFF_MS;
    return backoff + (int64_t)(rnd % (unsigned)(backoff / 4 + 1)); /* jitter */
}

void par_pool_core_crashed(par_pool_core_t *pc, int64_t now_ms, unsigned rnd)
{
    pc->restarts++;
    pc->crashes_in_row++;
    pc->respawn_at_ms = now_ms + par_pool_core_backoff_ms(pc->crashes_in_row, rnd);
}

void par_pool_core_uptime(par_pool_core_t *pc, int64_t uptime_ms)
{
    if (uptime_ms > PAR_POOL_STABLE_MS)
        pc->crashes_in_row = 0;
}
