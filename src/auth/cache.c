/*
 * auth/cache.c — see cache.h.
 */
#include "auth/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS 16
#define WAYS 4

typedef struct entry {
    unsigned char key[32];
    uint64_t gen;
    int64_t expires_at;
    par_identity_t *id; /* NULL: empty slot */
} entry_t;

typedef struct shard {
    pthread_mutex_t lock;
    size_t nsets;
    entry_t *sets; /* nsets * WAYS */
} shard_t;

struct par_token_cache {
    shard_t shards[SHARDS];
};

par_token_cache_t *par_token_cache_new(size_t entries)
{
    if (entries < SHARDS * WAYS)
        entries = SHARDS * WAYS;
    par_token_cache_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    size_t nsets = entries / (SHARDS * WAYS);
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&c->shards[i].lock, NULL);
        c->shards[i].nsets = nsets;
        c->shards[i].sets = calloc(nsets * WAYS, sizeof(entry_t));
        if (c->shards[i].sets == NULL) {
            par_token_cache_free(c);
            return NULL;
        }
    }
    return c;
}

void par_token_cache_free(par_token_cache_t *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < SHARDS; i++) {
        shard_t *s = &c->shards[i];
        for (size_t k = 0; s->sets && k < s->nsets * WAYS; k++)
            par_identity_unref(s->sets[k].id);
        free(s->sets);
        pthread_mutex_destroy(&s->lock);
    }
    free(c);
}

/* The key is a SHA-256: its bytes are already uniformly spread. */
static entry_t *set_for(par_token_cache_t *c, const unsigned char key[32], shard_t **sh)
{
    *sh = &c->shards[key[0] % SHARDS];
    uint64_t h;
    memcpy(&h, key + 8, sizeof(h));
    return &(*sh)->sets[(h % (*sh)->nsets) * WAYS];
}

par_identity_t *par_token_cache_get(par_token_cache_t *c, const unsigned char key[32], uint64_t gen,
                                    int64_t now)
{
    shard_t *sh;
    entry_t *set = set_for(c, key, &sh);
    par_identity_t *id = NULL;
    pthread_mutex_lock(&sh->lock);
    for (int w = 0; w < WAYS; w++) {
        entry_t *e = &set[w];
        if (e->id && memcmp(e->key, key, 32) == 0) {
            if (e->gen == gen && now < e->expires_at) {
                id = e->id;
                par_identity_ref(id);
            } else {
                par_identity_unref(e->id);
                e->id = NULL;
            }
            break;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return id;
}

void par_token_cache_put(par_token_cache_t *c, const unsigned char key[32], uint64_t gen,
                         int64_t expires_at, par_identity_t *id)
{
    shard_t *sh;
    entry_t *set = set_for(c, key, &sh);
    par_identity_ref(id);
    pthread_mutex_lock(&sh->lock);
    entry_t *victim = NULL;
    for (int w = 0; w < WAYS; w++) {
        entry_t *e = &set[w];
        if (e->id && memcmp(e->key, key, 32) == 0) {
            victim = e; /* a concurrent miss on the same token got here first */
            break;
        }
        if (victim == NULL || (victim->id && (e->id == NULL || e->expires_at < victim->expires_at)))
            victim = e;
    }
    par_identity_t *old = victim->id;
    memcpy(victim->key, key, 32);
    victim->gen = gen;
    victim->expires_at = expires_at;
    victim->id = id;
    pthread_mutex_unlock(&sh->lock);
    par_identity_unref(old);
}

size_t par_token_cache_count(par_token_cache_t *c)
{
    size_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        shard_t *s = &c->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t k = 0; k < s->nsets * WAYS; k++)
            n += s->sets[k].id != NULL;
        pthread_mutex_unlock(&s->lock);
    }
    return n;
}
