/* Unit tests for util/yaml.c: one document, structural checks, typed accessors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <par/par.h>

#include "util/yaml.h"

static int load(const char *s, par_yaml_t *y, par_buf_t *err)
{
    par_buf_init(err, 0);
    par_buf_terminate(err);
    return par_yaml_load(y, s, strlen(s), err);
}

static void expect_error(const char *s, const char *needle)
{
    par_yaml_t y;
    par_buf_t err;
    int rc = load(s, &y, &err);
    par_buf_terminate(&err);
    if (rc == PAR_OK)
        fail_msg("accepted: %s", s);
    assert_int_equal(rc, PAR_E_INVALID_ARGUMENT);
    if (strstr(err.data, needle) == NULL)
        fail_msg("error for %s is \"%s\", expected it to hold \"%s\"", s, err.data, needle);
    par_yaml_free(&y);
    par_buf_free(&err);
}

static void test_accessors(void **state)
{
    (void)state;
    par_yaml_t y;
    par_buf_t err;
    assert_int_equal(load("name: echo\npublic: false\nq: 'false'\nn: ~\nlist: [a, b]\n", &y, &err),
                     PAR_OK);
    yaml_node_t *root = par_yaml_root(&y);
    assert_non_null(root);
    size_t len;
    assert_string_equal(par_yaml_scalar(par_yaml_get(&y, root, "name"), &len), "echo");
    assert_int_equal(len, 4);
    int b = -1;
    assert_int_equal(par_yaml_bool(par_yaml_get(&y, root, "public"), &b), 0);
    assert_int_equal(b, 0);
    /* a quoted "false" is text, not a boolean */
    assert_int_equal(par_yaml_bool(par_yaml_get(&y, root, "q"), &b), -1);
    assert_true(par_yaml_is_null(par_yaml_get(&y, root, "n")));
    assert_true(par_yaml_is_null(par_yaml_get(&y, root, "absent")));
    assert_false(par_yaml_is_null(par_yaml_get(&y, root, "q")));
    yaml_node_t *l = par_yaml_get(&y, root, "list");
    assert_int_equal(l->type, YAML_SEQUENCE_NODE);
    assert_string_equal(par_yaml_kind(l), "a list");
    assert_int_equal(par_yaml_line(par_yaml_get(&y, root, "list")), 5);
    par_yaml_free(&y);
    par_buf_free(&err);
}

static void test_empty(void **state)
{
    (void)state;
    par_yaml_t y;
    par_buf_t err;
    assert_int_equal(load("", &y, &err), PAR_OK);
    assert_null(par_yaml_root(&y));
    par_yaml_free(&y);
    par_buf_free(&err);
}

static void test_refusals(void **state)
{
    (void)state;
    /* the input that crashed libfyaml 0.7.12 */
    expect_error("? p ] x:\t|", "line 1");
    expect_error("a: 1\na: 2\n", "duplicate key: a");
    expect_error("a: 1\n---\nb: 2\n", "only one YAML document");
    expect_error("? [a]\n: 1\n", "mapping key");
    expect_error("a: [1, 2\n", "line");
    /* an anchor that refers to itself */
    expect_error("a: &x [*x]\n", "nests too deeply");
}

static void test_alias_bomb(void **state)
{
    (void)state;
    char doc[2048] = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
    char prev = 'a';
    for (char c = 'b'; c <= 'j'; c++, prev++) {
        char line[128];
        snprintf(line, sizeof(line), "%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n",
                 c, c, prev, prev, prev, prev, prev, prev, prev, prev, prev, prev);
        strcat(doc, line);
    }
    expect_error(doc, "too many nodes");
}

static void test_deep_nesting(void **state)
{
    (void)state;
    size_t n = 100000;
    char *s = malloc(2 * n + 1);
    memset(s, '[', n);
    memset(s + n, ']', n);
    s[2 * n] = '\0';
    expect_error(s, "nests too deeply");
    /* below the cheap pre-scan, above the tree's depth limit */
    s[500] = '\0';
    memset(s + 250, ']', 250);
    expect_error(s, "nests too deeply");
    free(s);
}

static void test_brackets_in_text(void **state)
{
    (void)state;
    char doc[4200] = "a: \"";
    memset(doc + 4, '[', 4000);
    strcpy(doc + 4004, "\"\nb: x # [[[[\n");
    par_yaml_t y;
    par_buf_t err;
    assert_int_equal(load(doc, &y, &err), PAR_OK);
    size_t len;
    par_yaml_scalar(par_yaml_get(&y, par_yaml_root(&y), "a"), &len);
    assert_int_equal(len, 4000);
    par_yaml_free(&y);
    par_buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accessors),    cmocka_unit_test(test_empty),
        cmocka_unit_test(test_refusals),     cmocka_unit_test(test_alias_bomb),
        cmocka_unit_test(test_deep_nesting), cmocka_unit_test(test_brackets_in_text)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
