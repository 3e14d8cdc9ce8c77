/*
 * Unit tests for runtime/converge.c: the pure decision that turns a desired
 * set (the registry index's entries or the packages folder's files) and the
 * active set into deploys, refusals that stand, and removals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <par/par.h>

#include "runtime/converge.h"

static par_converge_plan_t plan;

static int teardown(void **state)
{
    (void)state;
    par__converge_plan_free(&plan);
    return 0;
}

/* An active version deployed by the index. */
#define HAVE(n, v, sha)                                                                            \
    {                                                                                              \
        n, v, sha, "https://r/" n ".apkg", "index", 1                                              \
    }

static void diff(const par_converge_input_t *in)
{
    par__converge_plan_free(&plan);
    assert_int_equal(par__converge_diff(in, &plan), PAR_OK);
}

static void new_entry_is_deployed(void **state)
{
    (void)state;
    par_converge_want_t want[] = {{"a", "1.0.0", NULL, "a\t1.0.0"}};
    const char *listed[] = {"a"};
    par_converge_input_t in = {
        .want = want, .nwant = 1, .listed = listed, .nlisted = 1, .origin = "index"};
    diff(&in);
    assert_int_equal(plan.ndeploy, 1);
    assert_int_equal(plan.deploy[0], 0);
    assert_int_equal(plan.nkept, 0);
    assert_int_equal(plan.nremove, 0);
}

static void unchanged_entry_is_left_alone(void **state)
{
    (void)state;
    par_converge_want_t want[] = {{"a", "1.0.0", "aa", "k1"}, {"b", "2.0.0", NULL, "k2"}};
    const char *listed[] = {"a", "b"};
    par_converge_have_t have[] = {HAVE("a", "1.0.0", "aa"), HAVE("b", "2.0.0", "bb")};
    par_converge_input_t in = {.want = want,
                               .nwant = 2,
                               .listed = listed,
                               .nlisted = 2,
                               .have = have,
                               .nhave = 2,
                               .origin = "index"};
    diff(&in);
    /* same name, version and digest; an entry without a digest takes any */
    assert_int_equal(plan.ndeploy, 0);
    assert_int_equal(plan.nremove, 0);
}

static void changed_version_or_digest_is_deployed(void **state)
{
    (void)state;
    par_converge_want_t want[] = {
        {"a", "1.1.0", "aa", "k1"}, {"b", "2.0.0", "b2", "k2"}, {"c", "3.0.0", NULL, "k3"}};
    const char *listed[] = {"a", "b", "c"};
    par_converge_have_t have[] = {HAVE("a", "1.0.0", "aa"),
                                  HAVE("b", "2.0.0", "bb"),
                                  /* a failed record of c at that version is not active */
                                  {"c", "3.0.0", "cc", "https://r/c.apkg", "index", 0}};
    par_converge_input_t in = {.want = want,
                               .nwant = 3,
                               .listed = listed,
                               .nlisted = 3,
                               .have = have,
                               .nhave = 3,
                               .origin = "index"};
    diff(&in);
    assert_int_equal(plan.ndeploy, 3);
    assert_int_equal(plan.deploy[0], 0);
    assert_int_equal(plan.deploy[1], 1);
    assert_int_equal(plan.deploy[2], 2);
    assert_int_equal(plan.nremove, 0);
}

static void unlisted_index_package_is_removed(void **state)
{
    (void)state;
    par_converge_want_t want[] = {{"a", "1.0.0", NULL, "k1"}};
    /* "bad" is named by an entry that is invalid otherwise: still listed */
    const char *listed[] = {"a", "bad"};
    par_converge_have_t have[] = {
        HAVE("a", "1.0.0", "aa"),
        HAVE("gone", "1.0.0", "gg"),
        HAVE("bad", "1.0.0", "bd"),
        {"api-pkg", "1.0.0", "xx", "/tmp/x.apkg", "api", 1},      /* not the index's */
        {"old", "1.0.0", "oo", "https://r/old.apkg", "index", 0}, /* a failed record */
    };
    par_converge_input_t in = {.want = want,
                               .nwant = 1,
                               .listed = listed,
                               .nlisted = 2,
                               .have = have,
                               .nhave = 5,
                               .origin = "index"};
    diff(&in);
    assert_int_equal(plan.ndeploy, 0);
    assert_int_equal(plan.nremove, 1);
    assert_int_equal(plan.remove[0], 1);
}

static void permanent_refusal_stands_until_the_entry_changes(void **state)
{
    (void)state;
    par_converge_want_t want[] = {{"a", "1.0.0", NULL, "a-key-1"}, {"b", "1.0.0", NULL, "b-key-2"}};
    const char *listed[] = {"a", "b"};
    /* "" stands for a failure that is retried (not permanent) */
    const char *refused[] = {"", "b-key-1", "a-key-1"};
    par_converge_input_t in = {.want = want,
                               .nwant = 2,
                               .listed = listed,
                               .nlisted = 2,
                               .refused = refused,
                               .nrefused = 3,
                               .origin = "index"};
    diff(&in);
    /* a: refused before and unchanged, kept with its record; b changed: deployed */
    assert_int_equal(plan.nkept, 1);
    assert_int_equal(plan.kept_want[0], 0);
    assert_int_equal(plan.kept_refused[0], 2);
    assert_int_equal(plan.ndeploy, 1);
    assert_int_equal(plan.deploy[0], 1);
}

static void refused_entry_that_became_current_is_not_kept(void **state)
{
    (void)state;
    /* deployed by other means since: current, so neither deployed nor kept */
    par_converge_want_t want[] = {{"a", "1.0.0", NULL, "a-key"}};
    const char *listed[] = {"a"};
    const char *refused[] = {"a-key"};
    par_converge_have_t have[] = {HAVE("a", "1.0.0", "aa")};
    par_converge_input_t in = {.want = want,
                               .nwant = 1,
                               .listed = listed,
                               .nlisted = 1,
                               .have = have,
                               .nhave = 1,
                               .refused = refused,
                               .nrefused = 1,
                               .origin = "index"};
    diff(&in);
    assert_int_equal(plan.ndeploy, 0);
    assert_int_equal(plan.nkept, 0);
}

static void duplicates_last_entry_wins(void **state)
{
    (void)state;
    par_converge_want_t want[] = {{"a", "1.0.0", NULL, "a1"},      {"b", "1.0.0", NULL, "b1"},
                                  {"a", "2.0.0", NULL, "a2"},      {"b", "1.0.0", NULL, "b1"},
                                  {NULL, NULL, NULL, "/p/x.apkg"}, {NULL, NULL, NULL, "/p/x.apkg"}};
    const char *listed[] = {"a", "b", "a", "b"};
    par_converge_input_t in = {
        .want = want, .nwant = 6, .listed = listed, .nlisted = 4, .origin = "index"};
    diff(&in);
    assert_int_equal(plan.ndeploy, 3);
    assert_int_equal(plan.deploy[0], 2);
    assert_int_equal(plan.deploy[1], 3);
    assert_int_equal(plan.deploy[2], 5);
}

static void folder_files_redeploy_and_vanished_ones_unload(void **state)
{
    (void)state;
    /* a changed file is deployed even when a version from it is active */
    par_converge_want_t want[] = {{NULL, NULL, NULL, "/p/a.apkg"}};
    const char *gone[] = {"/p/b.apkg"};
    par_converge_have_t have[] = {
        {"a", "1.0.0", "aa", "/p/a.apkg", "dir", 1},
        {"b", "1.0.0", "bb", "/p/b.apkg", "dir", 1},
        {"b", "0.9.0", "b0", "/p/b.apkg", "dir", 0},     /* not active: nothing to unload */
        {"c", "1.0.0", "cc", "/p/c.apkg", "dir", 1},     /* untouched */
        {"i", "1.0.0", "ii", "https://r/i", "index", 1}, /* no origin given: kept */
    };
    par_converge_input_t in = {
        .want = want, .nwant = 1, .have = have, .nhave = 5, .gone = gone, .ngone = 1};
    diff(&in);
    assert_int_equal(plan.ndeploy, 1);
    assert_int_equal(plan.deploy[0], 0);
    assert_int_equal(plan.nremove, 1);
    assert_int_equal(plan.remove[0], 1);
}

static void empty_sets(void **state)
{
    (void)state;
    par_converge_input_t in = {.origin = "index"};
    diff(&in);
    assert_int_equal(plan.ndeploy + plan.nkept + plan.nremove, 0);
    /* an empty index removes everything it deployed */
    par_converge_have_t have[] = {HAVE("a", "1.0.0", "aa")};
    in.have = have, in.nhave = 1;
    diff(&in);
    assert_int_equal(plan.nremove, 1);
}

static void which_refusals_are_permanent(void **state)
{
    (void)state;
    assert_true(par__converge_permanent(PAR_E_DIGEST_MISMATCH));
    assert_true(par__converge_permanent(PAR_E_SIGNATURE_INVALID));
    assert_true(par__converge_permanent(PAR_E_INVALID_PACKAGE));
    assert_false(par__converge_permanent(PAR_E_FETCH_FAILED));
    assert_false(par__converge_permanent(PAR_E_NO_MEMORY));
    assert_false(par__converge_permanent(PAR_E_TIMEOUT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(new_entry_is_deployed, teardown),
        cmocka_unit_test_teardown(unchanged_entry_is_left_alone, teardown),
        cmocka_unit_test_teardown(changed_version_or_digest_is_deployed, teardown),
        cmocka_unit_test_teardown(unlisted_index_package_is_removed, teardown),
        cmocka_unit_test_teardown(permanent_refusal_stands_until_the_entry_changes, teardown),
        cmocka_unit_test_teardown(refused_entry_that_became_current_is_not_kept, teardown),
        cmocka_unit_test_teardown(duplicates_last_entry_wins, teardown),
        cmocka_unit_test_teardown(folder_files_redeploy_and_vanished_ones_unload, teardown),
        cmocka_unit_test_teardown(empty_sets, teardown),
        cmocka_unit_test(which_refusals_are_permanent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
