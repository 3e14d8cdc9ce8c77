/* Unit tests for auth/auth.c, auth/config.c, auth/apikey.c and auth/cache.c:
 * configuration of the auth block, the Bearer scheme, API keys, the provider
 * seam and the verified-token cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <par/par.h>

#include "auth/auth.h"
#include "auth/cache.h"
#include "auth/jwt.h"
#include "config/apply.h"
#include "config/config.h"

/* SHA-256 of "s3cret-key-1" */
#define KEY1_SHA "471ab1409a49f9f41dc83fe9480422b9df19e8ef3d096b8f034deae1d01b45be"

static int load(par_auth_config_t *c, const char *yaml, int finish, char **err_out)
/* `finish`: always, as par_conf_to_auth() checks across keys */
{
    /* through the configuration table, as `par serve` reads it */
    par_buf_t err;
    par_buf_init(&err, 0);
    par_conf_t conf;
    par_conf_init(&conf);
    int rc = par_conf_load_text(&conf, "par.yaml", yaml, strlen(yaml), &err);
    if (rc == PAR_OK)
        rc = par_conf_to_auth(&conf, c, &err);
    else
        par_auth_config_init(c);
    par_conf_free(&conf);
    if (err_out)
        *err_out = err.data ? strndup(err.data, err.len) : strdup("");
    par_buf_free(&err);
    return rc;
}

static void expect_error(const char *yaml, const char *needle)
{
    par_auth_config_t c;
    char *err;
    if (load(&c, yaml, 1, &err) == PAR_OK)
        fail_msg("accepted:\n%s", yaml);
    if (strstr(err, needle) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, needle);
    free(err);
    par_auth_config_free(&c);
}

static void test_config_oidc(void **state)
{
    (void)state;
    par_auth_config_t c;
    char *err;
    int rc = load(&c,
                  "auth:\n"
                  "  mode: oidc\n"
                  "  tenant_claim: org_id\n"
                  "  open_paths: [/runtime/health, /metrics]\n"
                  "  oidc:\n"
                  "    issuer: https://idp.example/realms/par\n"
                  "    audience: par-runtime\n"
                  "    algorithms: [RS256, EdDSA]\n"
                  "    leeway_s: 30\n"
                  "  permissions:\n"
                  "    claims: [realm_access.roles]\n"
                  "    grants:\n"
                  "      par-admin: [runtime:admin, agents:invoke]\n"
                  "      echo-user: agents:invoke:echo\n",
                  1, &err);
    if (rc != PAR_OK)
        fail_msg("%s", err);
    free(err);
    assert_int_equal(c.mode, PAR_AUTH_OIDC);
    assert_string_equal(c.oidc.issuer, "https://idp.example/realms/par");
    assert_int_equal(c.oidc.alg_mask,
                     PAR_JWT_ALG_BIT(PAR_JWT_RS256) | PAR_JWT_ALG_BIT(PAR_JWT_EDDSA));
    assert_int_equal(c.oidc.leeway_s, 30);
    assert_int_equal(c.oidc.jwks_cache_min_s, 60); /* defaults stay */
    assert_int_equal(c.nopen, 2);
    assert_string_equal(c.open_paths[1], "/metrics");
    assert_string_equal(c.tenant_claim, "org_id");
    assert_int_equal(c.perms.nclaims, 1);
    assert_int_equal(c.perms.ngrants, 2);
    assert_true(c.perms.grants[0].perms.admin);
    assert_int_equal(c.perms.grants[1].perms.npatterns, 1);
    /* flags and environment override the file */
    par_buf_t e;
    par_buf_init(&e, 0);
    assert_int_equal(par_auth_config_set(&c, "oidc.leeway_s", "5", &e), PAR_OK);
    assert_int_equal(par_auth_config_set(&c, "oidc.audience", "other", &e), PAR_OK);
    assert_int_equal(par_auth_config_set(&c, "oidc.algorithms", "ES256, PS256", &e), PAR_OK);
    assert_int_equal(c.oidc.leeway_s, 5);
    assert_string_equal(c.oidc.audience, "other");
    assert_int_equal(c.oidc.alg_mask,
                     PAR_JWT_ALG_BIT(PAR_JWT_ES256) | PAR_JWT_ALG_BIT(PAR_JWT_PS256));
    assert_int_equal(par_auth_config_set(&c, "oidc.leeway", "5", &e), PAR_E_INVALID_ARGUMENT);
    assert_int_equal(par_auth_config_set(&c, "oidc.leeway_s", "-1", &e), PAR_E_INVALID_ARGUMENT);
    assert_int_equal(par_auth_config_set(&c, "oidc.leeway_s", "9999", &e), PAR_E_INVALID_ARGUMENT);
    assert_int_equal(par_auth_config_set(&c, "oidc.allow_http", "maybe", &e),
                     PAR_E_INVALID_ARGUMENT);
    assert_int_equal(par_auth_config_set(&c, "mode", "on", &e), PAR_E_INVALID_ARGUMENT);
    par_buf_free(&e);
    par_auth_config_free(&c);
}

static void test_config_errors(void **state)
{
    (void)state;
    expect_error("log: {level: info}\n", "auth.mode is not set");
    expect_error("auth: {mode: oidc}\n", "issuer");
    expect_error("auth: {mode: oidc, oidc: {issuer: http://idp, audience: par}}\n", "https://");
    expect_error("auth: {mode: oidc, oidc: {issuer: https://idp, audience: par, "
                 "algorithms: [RS256, none]}}\n",
                 "never accepted");
    expect_error("auth: {mode: oidc, oidc: {issuer: https://idp, audience: par, "
                 "algorithms: [HS256]}}\n",
                 "never accepted");
    expect_error("auth: {mode: oidc, oidc: {issuer: https://idp, audience: par, "
                 "algorithms: [XX1]}}\n",
                 "unknown algorithm");
    expect_error("auth: {mode: oidc, oidc: {isuer: https://idp}}\n",
                 "unknown key `auth.oidc.isuer` (did you mean `auth.oidc.issuer`?)");
    expect_error("auth: {mode: off, open_paths: [/runtime/packages]}\n", "cannot be opened");
    expect_error("auth: {mode: api_key}\n", "at least one key");
    expect_error("auth: {mode: api_key, api_keys: [{sha256: abc, subject: x}]}\n", "64 hex");
    expect_error("auth: {mode: api_key, api_keys: [{sha256: " KEY1_SHA "}]}\n",
                 "needs sha256 and subject");
    expect_error("auth: {mode: api_key, api_keys: [{sha256: " KEY1_SHA
                 ", subject: a}, {sha256: " KEY1_SHA ", subject: b}]}\n",
                 "the same key");
    expect_error("auth: {mode: api_key, api_keys: [{sha256: " KEY1_SHA
                 ", subject: a, permissions: [root]}]}\n",
                 "not a permission");
    expect_error("auth: {mode: off, permissions: {grants: {x: [agents:invoke:BAD]}}}\n",
                 "grants.x[0]");
    expect_error("auth: [mode, off]\n", "`auth`: expected a mapping");
    expect_error("auth: {mode: maybe}\n", "expected one of off, oidc, api_key");

    /* unset is off only in the embedded local default */
    par_auth_config_t c;
    par_buf_t e;
    par_buf_init(&e, 0);
    par_auth_config_init(&c);
    assert_int_equal(par_auth_config_finish(&c, 1, &e), PAR_OK);
    assert_int_equal(c.mode, PAR_AUTH_OFF);
    par_auth_config_free(&c);
    par_buf_free(&e);
}

static void test_bearer(void **state)
{
    (void)state;
    struct {
        const char *in;
        const char *tok; /* NULL: not a Bearer credential */
    } cases[] = {{"Bearer abc.def", "abc.def"},
                 {"bearer   abc ", "abc"},
                 {"BEARER\tabc", "abc"},
                 {"Bearer", ""},
                 {"Bearer ", ""},
                 {"Basic dXNlcjpwdw==", NULL},
                 {"Bearerabc", NULL},
                 {"", NULL},
                 {"  Bearer x", "x"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        par_slice_t in = {cases[i].in, strlen(cases[i].in)};
        par_slice_t t = par_auth_bearer(in);
        if (cases[i].tok == NULL) {
            assert_null(t.ptr);
        } else {
            assert_non_null(t.ptr);
            assert_int_equal(t.len, strlen(cases[i].tok));
            assert_memory_equal(t.ptr, cases[i].tok, t.len);
        }
    }
    par_slice_t none = {NULL, 0};
    assert_null(par_auth_bearer(none).ptr);
}

static par_auth_creds_t bearer(const char *v)
{
    par_auth_creds_t c = {.authorization = {v, v ? strlen(v) : 0}};
    return c;
}

static void test_api_keys(void **state)
{
    (void)state;
    par_auth_config_t c;
    char *err;
    int rc = load(&c,
                  "auth:\n"
                  "  mode: api_key\n"
                  "  api_keys:\n"
                  "    - sha256: " KEY1_SHA "\n"
                  "      subject: ci\n"
                  "      tenant: acme\n"
                  "      permissions: [runtime:admin, agents:invoke:echo]\n",
                  1, &err);
    if (rc != PAR_OK)
        fail_msg("%s", err);
    free(err);
    par_auth_t *a;
    par_buf_t e;
    par_buf_init(&e, 0);
    assert_int_equal(par_auth_new(&c, &a, &e), PAR_OK);
    assert_null(c.api_keys); /* taken over */
    assert_true(par_auth_enabled(a));
    par_identity_t *id = NULL;
    par_auth_creds_t cr = bearer("Bearer s3cret-key-1");
    assert_int_equal(par_auth_authenticate(a, &cr, NULL, "r1", &id), PAR_OK);
    assert_non_null(id);
    assert_string_equal(id->subject, "ci");
    assert_string_equal(id->tenant, "acme");
    char msg[300];
    assert_int_equal(par_auth_require_admin(a, id, "r1", msg, sizeof(msg)), PAR_OK);
    assert_int_equal(par_auth_require_invoke(a, id, "echo/shout", 10, "r1", msg, sizeof(msg)),
                     PAR_OK);
    assert_int_equal(par_auth_require_invoke(a, id, "other", 5, "r1", msg, sizeof(msg)),
                     PAR_E_FORBIDDEN);
    assert_non_null(strstr(msg, "agents:invoke"));
    par_identity_unref(id);
    /* the X-API-Key header works too */
    par_auth_creds_t xk = {.api_key = {"s3cret-key-1", 12}};
    assert_int_equal(par_auth_authenticate(a, &xk, NULL, "r2", &id), PAR_OK);
    par_identity_unref(id);
    cr = bearer("Bearer s3cret-key-2");
    assert_int_equal(par_auth_authenticate(a, &cr, NULL, "r3", &id), PAR_E_INVALID_TOKEN);
    assert_null(id);
    cr = bearer("Bearer ");
    assert_int_equal(par_auth_authenticate(a, &cr, NULL, "r4", &id), PAR_E_INVALID_TOKEN);
    cr = bearer(NULL);
    assert_int_equal(par_auth_authenticate(a, &cr, NULL, "r5", &id), PAR_E_UNAUTHORIZED);
    cr = bearer("Basic czNjcmV0LWtleS0xOg==");
    assert_int_equal(par_auth_authenticate(a, &cr, NULL, "r6", &id), PAR_E_UNAUTHORIZED);
    /* no identity, no admin */
    assert_int_equal(par_auth_require_admin(a, NULL, "r7", msg, sizeof(msg)), PAR_E_FORBIDDEN);
    assert_non_null(strstr(msg, "runtime:admin"));
    assert_true(par_auth_is_open(a, "/runtime/health", 15));
    assert_false(par_auth_is_open(a, "/runtime/healthz", 16));
    assert_false(par_auth_is_open(a, "/metrics", 8));
    json_t *d = par_auth_describe(a);
    assert_string_equal(json_string_value(json_object_get(d, "mode")), "api_key");
    assert_int_equal(json_integer_value(json_object_get(d, "api_keys")), 1);
    json_decref(d);
    par_buf_t why;
    par_buf_init(&why, 0);
    assert_true(par_auth_ready(a, &why));
    par_buf_free(&why);
    par_auth_destroy(a);
    par_buf_free(&e);
}

static void test_off(void **state)
{
    (void)state;
    par_auth_config_t c;
    par_auth_config_init(&c);
    c.mode = PAR_AUTH_OFF;
    par_auth_t *a;
    par_buf_t e;
    par_buf_init(&e, 0);
    assert_int_equal(par_auth_new(&c, &a, &e), PAR_OK);
    assert_false(par_auth_enabled(a));
    par_identity_t *id = (par_identity_t *)1;
    par_auth_creds_t cr = bearer(NULL);
    assert_int_equal(par_auth_authenticate(a, &cr, NULL, "r", &id), PAR_OK);
    assert_null(id);
    char msg[100];
    assert_int_equal(par_auth_require_admin(a, NULL, "r", msg, sizeof(msg)), PAR_OK);
    par_auth_destroy(a);
    par_buf_free(&e);
}

/* A provider that parks every request and answers from the test. */
typedef struct fake {
    par_auth_provider_t prov;
    par_auth_waiter_t *parked;
    int destroyed;
} fake_t;

static int fake_check(par_auth_provider_t *p, par_slice_t cred, par_auth_waiter_t *w,
                      par_identity_t **out, par_auth_fail_t *f)
{
    fake_t *x = p->data;
    if (cred.len == 4 && memcmp(cred.ptr, "good", 4) == 0) {
        *out = par_identity_new("fake-user", NULL);
        return PAR_OK;
    }
    if (w) {
        x->parked = w;
        return PAR_AUTH_PENDING;
    }
    return par__auth_fail(f, PAR_E_INVALID_TOKEN, PAR_AUTH_R_UNKNOWN_KID, "still unknown");
}

static int fake_ready(par_auth_provider_t *p, par_buf_t *why)
{
    (void)p;
    par_buf_appends(why, "fake: never ready");
    return 0;
}

static void fake_describe(par_auth_provider_t *p, json_t *into)
{
    (void)p;
    json_object_set_new(into, "fake", json_true());
}

static void fake_destroy(par_auth_provider_t *p)
{
    ((fake_t *)p->data)->destroyed = 1;
}

static const par_auth_provider_ops_t fake_ops = {.name = "fake",
                                                 .check = fake_check,
                                                 .ready = fake_ready,
                                                 .describe = fake_describe,
                                                 .destroy = fake_destroy};

static int woken;
static void on_ready(par_auth_waiter_t *w)
{
    (void)w;
    woken++;
}

static void test_provider_seam(void **state)
{
    (void)state;
    fake_t x = {{&fake_ops, &x}, NULL, 0};
    par_auth_config_t c;
    par_auth_config_init(&c);
    c.mode = PAR_AUTH_OIDC;
    par_auth_t *a;
    assert_int_equal(par_auth_new_with_provider(&c, &x.prov, &a), PAR_OK);
    par_identity_t *id = NULL;
    par_auth_creds_t cr = bearer("Bearer good");
    assert_int_equal(par_auth_authenticate(a, &cr, NULL, "r", &id), PAR_OK);
    assert_string_equal(id->subject, "fake-user");
    par_identity_unref(id);
    par_auth_waiter_t w = {.ready = on_ready};
    cr = bearer("Bearer later");
    assert_int_equal(par_auth_authenticate(a, &cr, &w, "r", &id), PAR_AUTH_PENDING);
    assert_ptr_equal(x.parked, &w);
    x.parked->ready(x.parked);
    assert_int_equal(woken, 1);
    /* the second check has no waiter: the provider must answer */
    assert_int_equal(par_auth_authenticate(a, &cr, NULL, "r", &id), PAR_E_INVALID_TOKEN);
    par_buf_t why;
    par_buf_init(&why, 0);
    assert_false(par_auth_ready(a, &why));
    assert_non_null(strstr(why.data, "never ready"));
    par_buf_free(&why);
    json_t *d = par_auth_describe(a);
    assert_string_equal(json_string_value(json_object_get(d, "provider")), "fake");
    assert_true(json_is_true(json_object_get(d, "fake")));
    json_decref(d);
    par_auth_destroy(a);
    assert_true(x.destroyed);
}

static void test_token_cache(void **state)
{
    (void)state;
    par_token_cache_t *c = par_token_cache_new(64);
    unsigned char k1[32] = {1}, k2[32] = {2};
    par_identity_t *id = par_identity_new("u", "t");
    par_token_cache_put(c, k1, 7, 1000, id);
    par_identity_t *got = par_token_cache_get(c, k1, 7, 999);
    assert_ptr_equal(got, id);
    par_identity_unref(got);
    assert_null(par_token_cache_get(c, k2, 7, 999));
    /* another key generation: a miss, and the entry is gone */
    assert_null(par_token_cache_get(c, k1, 8, 999));
    assert_null(par_token_cache_get(c, k1, 7, 999));
    /* expiry */
    par_token_cache_put(c, k1, 7, 1000, id);
    assert_null(par_token_cache_get(c, k1, 7, 1000));
    /* bounded: many more tokens than entries */
    for (unsigned i = 0; i < 5000; i++) {
        unsigned char k[32] = {0};
        memcpy(k, &i, sizeof(i));
        memcpy(k + 8, &i, sizeof(i));
        par_token_cache_put(c, k, 1, 2000 + i, id);
    }
    assert_true(par_token_cache_count(c) <= 64);
    assert_true(par_token_cache_count(c) > 0);
    par_identity_unref(id); /* the cache keeps its own references */
    par_token_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_oidc), cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_bearer),      cmocka_unit_test(test_api_keys),
        cmocka_unit_test(test_off),         cmocka_unit_test(test_provider_seam),
        cmocka_unit_test(test_token_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
