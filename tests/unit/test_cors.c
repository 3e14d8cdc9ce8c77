/* Unit tests for http/cors.c: which values of http.cors.origins and
 * http.cors.credentials are usable (the check `par serve` and `par config
 * check` make), and what the refusals say. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/server.h"

static int check(const char *origin, int credentials, char *err, size_t cap)
{
    par_http_opts_t o;
    memset(&o, 0, sizeof(o));
    o.cors_origins[0] = origin;
    o.cors_norigins = 1;
    o.cors_credentials = credentials;
    err[0] = '\0';
    return par_http_cors_check(&o, err, cap);
}

static void test_good_origins(void **state)
{
    (void)state;
    char err[300];
    static const char *const good[] = {
        "https://app.example.com", "http://localhost:3000", "https://a.b-c.example.org:8443",
        "http://127.0.0.1",        "http://[::1]:8080",     "app+x-y.z://host",
        "HTTPS://APP.EXAMPLE.COM",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        if (check(good[i], 1, err, sizeof(err)) != 0)
            fail_msg("%s refused: %s", good[i], err);
    assert_int_equal(check("*", 0, err, sizeof(err)), 0);
    /* none at all: nothing allowed, nothing wrong */
    par_http_opts_t o;
    memset(&o, 0, sizeof(o));
    o.cors_credentials = 1;
    assert_int_equal(par_http_cors_check(&o, err, sizeof(err)), 0);
}

static void test_bad_origins(void **state)
{
    (void)state;
    char err[300];
    static const char *const bad[] = {
        "https://app.example.com/",
        "https://app.example.com/path",
        "app.example.com",
        "https://",
        "https://:80",
        "https://app.example.com:",
        "https://app.example.com:0",
        "https://app.example.com:65536",
        "https://app.example.com:1234567",
        "://x",
        "1http://x",
        "https://app example.com",
        "https://[::1",
        "https://[]",
        "https://x?q",
        "",
        "**",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        if (check(bad[i], 0, err, sizeof(err)) == 0)
            fail_msg("'%s' accepted", bad[i]);
        assert_non_null(strstr(err, "http.cors.origins[0]"));
        assert_non_null(strstr(err, "scheme://host[:port]"));
    }
}

static void test_star_with_credentials(void **state)
{
    (void)state;
    char err[300];
    assert_int_equal(check("*", 1, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "\"*\" cannot be used with http.cors.credentials"));
}

static void test_too_many(void **state)
{
    (void)state;
    char err[300];
    par_http_opts_t o;
    memset(&o, 0, sizeof(o));
    for (unsigned i = 0; i < PAR_HTTP_CORS_MAX; i++)
        o.cors_origins[i] = "https://a.example.com";
    o.cors_norigins = PAR_HTTP_CORS_MAX;
    assert_int_equal(par_http_cors_check(&o, err, sizeof(err)), 0);
    o.cors_norigins = PAR_HTTP_CORS_MAX + 1; /* what par_conf_to_http says for more */
    assert_int_equal(par_http_cors_check(&o, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "at most 32"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_origins),
        cmocka_unit_test(test_bad_origins),
        cmocka_unit_test(test_star_with_credentials),
        cmocka_unit_test(test_too_many),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
