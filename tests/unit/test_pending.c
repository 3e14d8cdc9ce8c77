/* Unit tests for loader/pending.c: a worker's table of calls in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "loader/pending.h"

static void test_add_find_remove(void **state)
{
    (void)state;
    par_pending_t t = {0};
    par_pending_ent_t a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    par_pending_add(&t, &a);
    par_pending_add(&t, &b);
    par_pending_add(&t, &c);
    assert_int_equal(t.count, 3);
    assert_ptr_equal(par_pending_find(&t, 2), &b);
    assert_ptr_equal(par_pending_find(&t, 1), &a);
    assert_null(par_pending_find(&t, 4));
    assert_int_equal(t.count, 3); /* find leaves it in */
    assert_ptr_equal(par_pending_remove(&t, 2), &b);
    assert_null(b.next);
    assert_int_equal(t.count, 2);
    assert_null(par_pending_find(&t, 2));
    assert_null(par_pending_remove(&t, 2)); /* removed once */
    assert_int_equal(t.count, 2);
    assert_ptr_equal(par_pending_find(&t, 3), &c);
    assert_ptr_equal(par_pending_remove(&t, 1), &a);
    assert_ptr_equal(par_pending_remove(&t, 3), &c);
    assert_int_equal(t.count, 0);
}

/* Ids that land in one bucket: each still found, removed from the middle,
 * head and tail of its chain. */
static void test_collisions(void **state)
{
    (void)state;
    par_pending_t t = {0};
    par_pending_ent_t e[5];
    for (int i = 0; i < 5; i++) {
        e[i] = (par_pending_ent_t){.id = 7 + (uint64_t)i * PAR_PENDING_BUCKETS};
        par_pending_add(&t, &e[i]);
    }
    for (int i = 0; i < 5; i++)
        assert_ptr_equal(par_pending_find(&t, e[i].id), &e[i]);
    assert_null(par_pending_find(&t, 7 + 5 * PAR_PENDING_BUCKETS));
    assert_ptr_equal(par_pending_remove(&t, e[2].id), &e[2]); /* middle */
    assert_ptr_equal(par_pending_remove(&t, e[4].id), &e[4]); /* head: added last */
    assert_ptr_equal(par_pending_remove(&t, e[0].id), &e[0]); /* tail */
    assert_ptr_equal(par_pending_find(&t, e[1].id), &e[1]);
    assert_ptr_equal(par_pending_find(&t, e[3].id), &e[3]);
    assert_null(par_pending_find(&t, e[2].id));
    assert_int_equal(t.count, 2);
}

static void test_many_ids(void **state)
{
    (void)state;
    enum { N = 10000 };
    par_pending_t t = {0};
    par_pending_ent_t *e = calloc(N, sizeof(*e));
    assert_non_null(e);
    for (size_t i = 0; i < N; i++) {
        e[i].id = i * 2654435761u + 1; /* spread, never 0 */
        par_pending_add(&t, &e[i]);
    }
    assert_int_equal(t.count, N);
    for (size_t i = 0; i < N; i += 2)
        assert_ptr_equal(par_pending_remove(&t, e[i].id), &e[i]);
    assert_int_equal(t.count, N / 2);
    for (size_t i = 0; i < N; i++) {
        if (i % 2)
            assert_ptr_equal(par_pending_find(&t, e[i].id), &e[i]);
        else
            assert_null(par_pending_find(&t, e[i].id));
    }
    free(e);
}

static int odd(par_pending_ent_t *e, void *arg)
{
    (*(int *)arg)++;
    return (int)(e->id % 2);
}

static void test_take_if_and_all(void **state)
{
    (void)state;
    par_pending_t t = {0};
    par_pending_ent_t e[200];
    for (int i = 0; i < 200; i++) {
        e[i] = (par_pending_ent_t){.id = (uint64_t)i + 1};
        par_pending_add(&t, &e[i]);
    }
    int asked = 0;
    size_t taken = 0;
    for (par_pending_ent_t *x = par_pending_take_if(&t, odd, &asked); x; x = x->next) {
        assert_int_equal(x->id % 2, 1);
        taken++;
    }
    assert_int_equal(asked, 200);
    assert_int_equal(taken, 100);
    assert_int_equal(t.count, 100);
    assert_null(par_pending_find(&t, 1));
    assert_ptr_equal(par_pending_find(&t, 2), &e[1]);
    taken = 0;
    for (par_pending_ent_t *x = par_pending_take_if(&t, NULL, NULL); x; x = x->next) {
        assert_int_equal(x->id % 2, 0);
        taken++;
    }
    assert_int_equal(taken, 100);
    assert_int_equal(t.count, 0);
    for (int i = 0; i < 200; i++)
        assert_null(par_pending_find(&t, (uint64_t)i + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_find_remove),
        cmocka_unit_test(test_collisions),
        cmocka_unit_test(test_many_ids),
        cmocka_unit_test(test_take_if_and_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
