/* Unit tests for loader/pool.c: a worker pool's admission, queue, spawning,
 * backoff and crash-loop decisions, driven with fake time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <par/par.h>

#include "loader/pool.h"

static par_pool_core_t pool(unsigned limit, unsigned queue_max)
{
    par_pool_core_t pc = {.limit = limit,
                          .queue_max = queue_max,
                          .min_workers = 1,
                          .max_workers = 4,
                          .concurrency = 2};
    par_pool_core_init(&pc);
    return pc;
}

/* Slots: a limited call dispatches while a slot is free, then queues, then is
 * refused with over_capacity once the queue is full. */
static void test_admission_slots_and_queue(void **state)
{
    (void)state;
    par_pool_core_t pc = pool(2, 1);
    par_pool_ent_t a = {.wants_slot = 1}, b = {.wants_slot = 1}, q = {.wants_slot = 1};
    assert_int_equal(par_pool_core_admit(&pc, 1, 1, 1), PAR_ADMIT_DISPATCH);
    par_pool_core_take_slot(&pc, &a);
    assert_int_equal(par_pool_core_admit(&pc, 1, 1, 1), PAR_ADMIT_DISPATCH);
    par_pool_core_take_slot(&pc, &b);
    assert_int_equal(pc.dispatched, 2);
    assert_true(a.holds_slot && b.holds_slot);
    /* at the limit: the next waits, even with a ready worker */
    assert_int_equal(par_pool_core_admit(&pc, 1, 1, 1), PAR_ADMIT_QUEUE);
    par_pool_core_enqueue(&pc, &q);
    assert_int_equal(pc.q_len, 1);
    /* queue full: over capacity (429) */
    int admit = par_pool_core_admit(&pc, 1, 1, 1);
    assert_int_equal(admit, PAR_ADMIT_FULL);
    assert_int_equal(par_pool_core_refusal(admit), PAR_E_OVER_CAPACITY);
    /* a sibling call never waits for a slot its caller holds */
    assert_int_equal(par_pool_core_admit(&pc, 0, 1, 1), PAR_ADMIT_DISPATCH);
    /* the queued call cannot go while the slots are held */
    assert_null(par_pool_core_next(&pc));
    par_pool_core_release_slot(&pc, &a);
    assert_false(a.holds_slot);
    assert_int_equal(pc.dispatched, 1);
    par_pool_core_release_slot(&pc, &a); /* released once: a second release is a no-op */
    assert_int_equal(pc.dispatched, 1);
    assert_ptr_equal(par_pool_core_next(&pc), &q);
    assert_true(q.holds_slot);
    assert_int_equal(pc.dispatched, 2);
    assert_int_equal(pc.q_len, 0);
    assert_null(pc.q_head);
    assert_null(pc.q_tail);
}

static void test_no_limit(void **state)
{
    (void)state;
    par_pool_core_t pc = pool(0, 0);
    par_pool_ent_t e = {.wants_slot = 1};
    for (int i = 0; i < 100; i++)
        assert_int_equal(par_pool_core_admit(&pc, 1, 1, 1), PAR_ADMIT_DISPATCH);
    par_pool_core_take_slot(&pc, &e);
    assert_false(e.holds_slot); /* no limit: no slot to hold */
    assert_int_equal(pc.dispatched, 0);
    /* no ready worker: queued, never refused for capacity */
    assert_int_equal(par_pool_core_admit(&pc, 1, 0, 0), PAR_ADMIT_QUEUE);
}

static void test_queue_order_unqueue_and_take(void **state)
{
    (void)state;
    par_pool_core_t pc = pool(0, 10);
    par_pool_ent_t e[4] = {{0}};
    for (int i = 0; i < 4; i++)
        par_pool_core_enqueue(&pc, &e[i]);
    assert_true(par_pool_core_unqueue(&pc, &e[3])); /* the tail */
    assert_ptr_equal(pc.q_tail, &e[2]);
    assert_false(par_pool_core_unqueue(&pc, &e[3])); /* not queued any more */
    assert_true(par_pool_core_unqueue(&pc, &e[1]));  /* the middle */
    assert_int_equal(pc.q_len, 2);
    assert_ptr_equal(par_pool_core_next(&pc), &e[0]); /* first in, first out */
    par_pool_core_enqueue(&pc, &e[3]);
    par_pool_ent_t *all = par_pool_core_take_queue(&pc);
    assert_ptr_equal(all, &e[2]);
    assert_ptr_equal(all->next, &e[3]);
    assert_null(all->next->next);
    assert_int_equal(pc.q_len, 0);
    assert_null(pc.q_head);
    assert_null(pc.q_tail);
}

static void test_queue_deadlines(void **state)
{
    (void)state;
    par_pool_core_t pc = pool(0, 10);
    par_pool_ent_t a = {.deadline_ms = 100}, b = {.deadline_ms = 0}, c = {.deadline_ms = 300},
                   d = {.deadline_ms = 200};
    par_pool_core_enqueue(&pc, &a);
    par_pool_core_enqueue(&pc, &b);
    par_pool_core_enqueue(&pc, &c);
    par_pool_core_enqueue(&pc, &d);
    assert_null(par_pool_core_take_expired(&pc, 99));
    assert_int_equal(pc.q_len, 4);
    par_pool_ent_t *x =
        par_pool_core_take_expired(&pc, 200); /* a deadline of 200 is passed at 200 */
    assert_ptr_equal(x, &a);
    assert_ptr_equal(x->next, &d);
    assert_null(x->next->next);
    assert_int_equal(pc.q_len, 2);
    assert_ptr_equal(pc.q_head, &b);
    assert_ptr_equal(pc.q_tail, &c); /* the tail is right after the last was taken */
    par_pool_ent_t e = {0};
    par_pool_core_enqueue(&pc, &e);
    assert_ptr_equal(c.next, &e);
    /* no deadline never expires */
    x = par_pool_core_take_expired(&pc, INT64_MAX);
    assert_ptr_equal(x, &c);
    assert_ptr_equal(pc.q_head, &b);
    assert_ptr_equal(pc.q_tail, &e);
}

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(par_pool_core_backoff_ms(1, 12345), 0); /* the first crash: at once */
    assert_int_equal(par_pool_core_backoff_ms(2, 0), 50);
    assert_int_equal(par_pool_core_backoff_ms(3, 0), 100);
    assert_int_equal(par_pool_core_backoff_ms(4, 0), 200);
    assert_int_equal(par_pool_core_backoff_ms(8, 0), 3200);
    assert_int_equal(par_pool_core_backoff_ms(9, 0), 6400);
    assert_int_equal(par_pool_core_backoff_ms(50, 0), 6400); /* capped doubling */
    /* jitter: at most a quarter more */
    assert_int_equal(par_pool_core_backoff_ms(2, 12), 62);
    assert_int_equal(par_pool_core_backoff_ms(2, 13), 50);
    for (unsigned r = 0; r < 1000; r++) {
        int64_t b = par_pool_core_backoff_ms(5, r * 7919u);
        assert_true(b >= 400 && b <= 500);
    }
}

static void test_crash_loop_with_fake_time(void **state)
{
    (void)state;
    par_pool_core_t pc = pool(0, 10);
    int64_t now = 1000000;
    par_pool_core_worker_up(&pc);
    for (unsigned i = 1; i < PAR_POOL_CRASH_LOOP_CRASHES; i++) {
        par_pool_core_worker_down(&pc);
        par_pool_core_crashed(&pc, now, 0);
        assert_int_equal(pc.crashes_in_row, i);
        assert_false(par_pool_core_crash_loop(&pc, 0));
        /* no respawn before the backoff ends, then one worker */
        int64_t wait = par_pool_core_backoff_ms(i, 0);
        if (wait > 0)
            assert_int_equal(par_pool_core_spawn_count(&pc, now + wait - 1), 0);
        assert_int_equal(par_pool_core_spawn_count(&pc, now + wait), 1);
        par_pool_core_worker_up(&pc);
        now += wait;
    }
    par_pool_core_worker_down(&pc);
    par_pool_core_crashed(&pc, now, 0);
    assert_int_equal(pc.restarts, PAR_POOL_CRASH_LOOP_CRASHES);
    assert_true(par_pool_core_crash_loop(&pc, 0));
    assert_false(par_pool_core_crash_loop(&pc, 1)); /* a ready worker: not a loop */
    int admit = par_pool_core_admit(&pc, 1, 0, 0);
    assert_int_equal(admit, PAR_ADMIT_CRASH_LOOP);
    assert_int_equal(par_pool_core_refusal(admit), PAR_E_UNAVAILABLE);
    /* a worker up for less than the stable time keeps the streak, longer ends it */
    par_pool_core_uptime(&pc, PAR_POOL_STABLE_MS);
    assert_int_equal(pc.crashes_in_row, PAR_POOL_CRASH_LOOP_CRASHES);
    par_pool_core_uptime(&pc, PAR_POOL_STABLE_MS + 1);
    assert_int_equal(pc.crashes_in_row, 0);
    assert_false(par_pool_core_crash_loop(&pc, 0));
    assert_int_equal(par_pool_core_admit(&pc, 1, 0, 0), PAR_ADMIT_QUEUE);
}

static void test_spawn_decisions(void **state)
{
    (void)state;
    par_pool_core_t pc = {.min_workers = 0, .max_workers = 2, .concurrency = 2};
    par_pool_core_init(&pc);
    assert_int_equal(par_pool_core_spawn_count(&pc, 0), 0); /* idle, no minimum */
    par_pool_ent_t e = {0};
    par_pool_core_enqueue(&pc, &e);
    assert_int_equal(par_pool_core_spawn_count(&pc, 0), 1); /* a queued call wants one */
    par_pool_core_worker_up(&pc);
    /* growth: a busy worker asks for one more, once, up to max_workers */
    assert_false(par_pool_core_grow(&pc, 1));
    assert_true(par_pool_core_grow(&pc, 2));
    assert_false(par_pool_core_grow(&pc, 5)); /* already asked */
    assert_int_equal(par_pool_core_spawn_count(&pc, 0), 1);
    assert_false(pc.want_spawn);
    par_pool_core_worker_up(&pc);
    assert_false(par_pool_core_grow(&pc, 9)); /* at max_workers */
    assert_int_equal(par_pool_core_spawn_count(&pc, 0), 0);
    /* a spawn that failed retries after a second */
    par_pool_core_worker_down(&pc);
    par_pool_core_worker_down(&pc);
    par_pool_core_spawn_failed(&pc, 500);
    assert_int_equal(par_pool_core_spawn_count(&pc, 500 + PAR_POOL_RESPAWN_RETRY_MS - 1), 0);
    assert_int_equal(par_pool_core_spawn_count(&pc, 500 + PAR_POOL_RESPAWN_RETRY_MS), 1);
    /* min_workers above max_workers raises max_workers */
    par_pool_core_t big = {.min_workers = 3, .max_workers = 1};
    par_pool_core_init(&big);
    assert_int_equal(big.max_workers, 3);
    assert_int_equal(par_pool_core_spawn_count(&big, 0), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admission_slots_and_queue),
        cmocka_unit_test(test_no_limit),
        cmocka_unit_test(test_queue_order_unqueue_and_take),
        cmocka_unit_test(test_queue_deadlines),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_crash_loop_with_fake_time),
        cmocka_unit_test(test_spawn_decisions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
