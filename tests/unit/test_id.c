/* Unit tests for core/id.c: agent id parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/id.h"

static int parse(const char *s, par_agent_id_t *id)
{
    return par_agent_id_parse(s, strlen(s), id);
}

static void test_forms(void **state)
{
    (void)state;
    par_agent_id_t id;
    assert_int_equal(parse("echo", &id), 0);
    assert_int_equal(id.name_len, 4);
    assert_null(id.version);
    assert_null(id.sub);

    assert_int_equal(parse("echo/upper", &id), 0);
    assert_int_equal(id.name_len, 4);
    assert_int_equal(id.sub_len, 5);
    assert_memory_equal(id.sub, "upper", 5);

    assert_int_equal(parse("my-agent2@1.2.3-rc.1+b7", &id), 0);
    assert_int_equal(id.name_len, 9);
    assert_int_equal(id.version_len, 13);
    assert_memory_equal(id.version, "1.2.3-rc.1+b7", 13);

    assert_int_equal(parse("echo@1.0.0/upper", &id), 0);
    assert_memory_equal(id.version, "1.0.0", id.version_len);
    assert_memory_equal(id.sub, "upper", id.sub_len);
}

static void test_rejects(void **state)
{
    (void)state;
    par_agent_id_t id;
    const char *bad[] = {"",         "Echo",     "1echo",     "-x",        "echo/",
                         "/upper",   "echo@",    "echo@/x",   "echo/up/x", "echo/Up",
                         "echo@1 0", "echo@1@2", "ec ho",     "echo/up@1", "echo\n",
                         "echo%2f",  "e_cho",    "echo@1.0/", "@1.0.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        if (parse(bad[i], &id) == 0)
            fail_msg("accepted bad id '%s'", bad[i]);
    }
    char longname[80];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(parse(longname, &id), -1);
}

static void test_path_check(void **state)
{
    (void)state;
    char why[96];
    assert_int_equal(par_id_path_check("echo", 4, 200, why, sizeof(why)), 0);
    assert_int_equal(par_id_path_check("echo@1.0.0/sub", 14, 200, why, sizeof(why)), 0);
    assert_int_equal(par_id_path_check("echo\0junk", 9, 200, why, sizeof(why)), -1);
    assert_string_equal(why, "holds the control byte 0x00 at byte 4");
    assert_int_equal(par_id_path_check("ec\x01ho", 5, 200, why, sizeof(why)), -1);
    assert_int_equal(par_id_path_check("echo\n", 5, 200, why, sizeof(why)), -1);
    assert_int_equal(par_id_path_check("echo\x7f", 5, 200, why, sizeof(why)), -1);
    assert_int_equal(par_id_path_check("", 0, 200, why, sizeof(why)), -1);
    char big[202];
    memset(big, 'a', sizeof(big));
    assert_int_equal(par_id_path_check(big, 200, 200, why, sizeof(why)), 0);
    assert_int_equal(par_id_path_check(big, 201, 200, why, sizeof(why)), -1);
    assert_string_equal(why, "is 201 bytes long; the limit is 200");
    /* non-ASCII is not a control byte: the lookup refuses it as unknown */
    assert_int_equal(par_id_path_check("\xc3\xa9", 2, 200, why, sizeof(why)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_forms), cmocka_unit_test(test_rejects),
                                       cmocka_unit_test(test_path_check)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
