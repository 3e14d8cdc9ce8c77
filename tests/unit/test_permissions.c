/* Unit tests for auth/permissions.c: permission strings, agent patterns and
 * the mapping from token claims to permissions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "auth/permissions.h"

static int allows(const par_perms_t *p, const char *id)
{
    return par_perms_allow_invoke(p, id, strlen(id));
}

static void test_parse(void **state)
{
    (void)state;
    par_perms_t p = {0};
    char err[200];
    assert_int_equal(par_perms_add(&p, "runtime:admin", err, sizeof(err)), 0);
    assert_true(par_perms_allow_admin(&p));
    assert_false(p.invoke_all);
    assert_int_equal(par_perms_add(&p, "agents:invoke:echo", err, sizeof(err)), 0);
    assert_int_equal(par_perms_add(&p, "agents:invoke:echo", err, sizeof(err)), 0);
    assert_int_equal(p.npatterns, 1); /* no duplicates */
    assert_int_equal(par_perms_add(&p, "agents:invoke:*", err, sizeof(err)), 0);
    assert_true(p.invoke_all);
    const char *bad[] = {"runtime:admins",
                         "admin",
                         "agents:invoke:",
                         "agents:invoke:Echo",
                         "agents:invoke:echo;rm",
                         "agents:invokeecho",
                         "",
                         "agents:invoke:a b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        err[0] = '\0';
        if (par_perms_add(&p, bad[i], err, sizeof(err)) != -1)
            fail_msg("accepted '%s'", bad[i]);
        assert_true(err[0] != '\0');
    }
    par_perms_free(&p);
}

static void test_patterns(void **state)
{
    (void)state;
    par_perms_t p = {0};
    assert_false(allows(&p, "echo")); /* nothing granted, nothing allowed */
    par_perms_add(&p, "agents:invoke:echo", NULL, 0);
    /* a pattern without '/' grants the whole package, whatever version */
    assert_true(allows(&p, "echo"));
    assert_true(allows(&p, "echo/shout"));
    assert_true(allows(&p, "echo@1.0.0"));
    assert_true(allows(&p, "echo@1.0.0/shout"));
    assert_false(allows(&p, "echoes"));
    assert_false(allows(&p, "ech"));
    assert_false(allows(&p, "other/echo"));
    assert_false(allows(&p, "Echo"));      /* not a valid id */
    assert_false(allows(&p, "echo/../x")); /* not a valid id */
    par_perms_free(&p);

    par_perms_add(&p, "agents:invoke:team-*", NULL, 0);
    par_perms_add(&p, "agents:invoke:tools/sum*", NULL, 0);
    assert_true(allows(&p, "team-a"));
    assert_true(allows(&p, "team-b/sub"));
    assert_false(allows(&p, "team"));
    /* a pattern with '/' grants exports, not the main export */
    assert_true(allows(&p, "tools/summarize"));
    assert_true(allows(&p, "tools@2.0.0/sum"));
    assert_false(allows(&p, "tools"));
    assert_false(allows(&p, "tools/upper"));
    par_perms_free(&p);

    par_perms_add(&p, "agents:invoke", NULL, 0);
    assert_true(allows(&p, "anything/at-all"));
    assert_false(par_perms_allow_admin(&p));
    par_perms_free(&p);
}

static json_t *claims(const char *s)
{
    json_t *j = json_loads(s, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_claim_paths(void **state)
{
    (void)state;
    json_t *c = claims("{\"realm_access\":{\"roles\":[\"a\"]},\"https://x.example/roles\":[\"b\"],"
                       "\"a\":{\"b\":{\"c\":\"deep\"}}}");
    assert_non_null(par_claim_get(c, "realm_access.roles"));
    assert_string_equal(json_string_value(par_claim_get(c, "a.b.c")), "deep");
    assert_non_null(par_claim_get(c, "https://x.example/roles"));
    assert_null(par_claim_get(c, "realm_access.groups"));
    assert_null(par_claim_get(c, "a.b.c.d"));
    assert_null(par_claim_get(c, "missing"));
    json_decref(c);
}

static void test_from_claims_identity(void **state)
{
    (void)state;
    par_perm_map_t m;
    assert_int_equal(par_perm_map_default(&m), 0);
    /* without grants, claim values that are permissions grant themselves */
    json_t *c = claims("{\"scope\":\"openid  profile agents:invoke:echo \",\"scp\":[\"email\"],"
                       "\"roles\":[\"runtime:admin\", 7]}");
    par_perms_t p = {0};
    assert_int_equal(par_perms_from_claims(&m, c, &p), 0);
    assert_true(p.admin);
    assert_false(p.invoke_all);
    assert_true(allows(&p, "echo/shout"));
    assert_false(allows(&p, "other"));
    par_perms_free(&p);
    json_decref(c);

    c = claims("{\"scp\":[\"agents:invoke\"]}");
    assert_int_equal(par_perms_from_claims(&m, c, &p), 0);
    assert_true(p.invoke_all);
    assert_false(p.admin);
    par_perms_free(&p);
    json_decref(c);

    /* types other than strings and arrays of strings grant nothing */
    c = claims("{\"scope\":{\"runtime:admin\":true},\"roles\":\"runtime:admin\"}");
    assert_int_equal(par_perms_from_claims(&m, c, &p), 0);
    assert_true(p.admin); /* "roles" as a single string */
    par_perms_free(&p);
    json_decref(c);
    c = claims("{\"scope\":{\"runtime:admin\":true}}");
    assert_int_equal(par_perms_from_claims(&m, c, &p), 0);
    assert_false(p.admin);
    par_perms_free(&p);
    json_decref(c);
    par_perm_map_free(&m);
}

static void test_from_claims_grants(void **state)
{
    (void)state;
    par_perm_map_t m = {0};
    m.claims = calloc(1, sizeof(char *));
    m.claims[0] = strdup("realm_access.roles");
    m.nclaims = 1;
    m.grants = calloc(2, sizeof(par_grant_t));
    m.grants[0].value = strdup("par-admin");
    par_perms_add(&m.grants[0].perms, "runtime:admin", NULL, 0);
    par_perms_add(&m.grants[0].perms, "agents:invoke", NULL, 0);
    m.grants[1].value = strdup("echo-user");
    par_perms_add(&m.grants[1].perms, "agents:invoke:echo", NULL, 0);
    m.ngrants = 2;

    par_perms_t p = {0};
    json_t *c = claims("{\"realm_access\":{\"roles\":[\"echo-user\",\"offline_access\"]},"
                       "\"scope\":\"runtime:admin\"}");
    assert_int_equal(par_perms_from_claims(&m, c, &p), 0);
    /* with grants, only mapped values count: a raw permission name in scope does not */
    assert_false(p.admin);
    assert_true(allows(&p, "echo"));
    assert_false(allows(&p, "other"));
    par_perms_free(&p);
    json_decref(c);

    c = claims("{\"realm_access\":{\"roles\":[\"par-admin\"]}}");
    assert_int_equal(par_perms_from_claims(&m, c, &p), 0);
    assert_true(p.admin);
    assert_true(p.invoke_all);
    par_perms_free(&p);
    json_decref(c);
    par_perm_map_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_claim_paths),
        cmocka_unit_test(test_from_claims_identity),
        cmocka_unit_test(test_from_claims_grants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
