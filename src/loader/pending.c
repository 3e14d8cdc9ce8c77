/*
 * loader/pending.c — see pending.h.
 */
#include "loader/pending.h"

#include <assert.h>

static par_pending_ent_t **bucket(const par_pending_t *t, uint64_t id)
{
    return (par_pending_ent_t **)&t->b[id % PAR_PENDING_BUCKETS];
}

void par_pending_add(par_pending_t *t, par_pending_ent_t *e)
{
    assert(par_pending_find(t, e->id) == NULL); /* ids are unique per worker */
    par_pending_ent_t **b = bucket(t, e->id);
    e->next = *b;
    *b = e;
    t->count++;
}

par_pending_ent_t *par_pending_find(const par_pending_t *t, uint64_t id)
{
    for (par_pending_ent_t *e = *bucket(t, id); e; e = e->next)
        if (e->id == id)
            return e;
    return NULL;
}

par_pending_ent_t *par_pending_remove(par_pending_t *t, uint64_t id)
{
    for (par_pending_ent_t **pp = bucket(t, id); *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            par_pending_ent_t *e = *pp;
            *pp = e->next;
            e->next = NULL;
            assert(t->count > 0);
            t->count--;
            return e;
        }
    }
    return NULL;
}

par_pending_ent_t *par_pending_take_if(par_pending_t *t, int (*pred)(par_pending_ent_t *, void *),
                                       void *arg)
{
    par_pending_ent_t *taken = NULL;
    for (size_t i = 0; i < PAR_PENDING_BUCKETS; i++) {
        for (par_pending_ent_t **pp = &t->b[i]; *pp;) {
            par_pending_ent_t *e = *pp;
            if (pred && !pred(e, arg)) {
                pp = &e->next;
                continue;
            }
            *pp = e->next;
            e->next = taken;
            taken = e;
            assert(t->count > 0);
            t->count--;
        }
    }
    assert(pred != NULL || t->count == 0);
    return taken;
}
