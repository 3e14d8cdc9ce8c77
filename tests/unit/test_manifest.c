/* Unit tests for pkg/manifest.c: every validation rule, good and bad. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <par/par.h>

#include "pkg/manifest.h"

static par_buf_t errs;

static int parse(const char *y, par_manifest_t **m)
{
    par_buf_reset(&errs);
    int rc = par_manifest_parse(y, strlen(y), m, &errs);
    par_buf_terminate(&errs);
    return rc;
}

/* Asserts that parsing fails and that the error text names `needle`. */
static void refused(const char *y, const char *needle)
{
    par_manifest_t *m = (par_manifest_t *)1;
    int rc = parse(y, &m);
    if (rc != PAR_E_INVALID_PACKAGE || m != NULL)
        fail_msg("accepted: %s", y);
    if (errs.data == NULL || strstr(errs.data, needle) == NULL)
        fail_msg("error for\n%s\nlacks '%s':\n%s", y, needle, errs.data ? errs.data : "");
}

static const char pixell[] = "version: \"1.0\"\n"
                             "name: echo\n"
                             "display_name: Echo\n"
                             "description: Returns its input unchanged.\n"
                             "author: PAR\n"
                             "license: MIT\n"
                             "runtime: python3.11\n"
                             "entrypoint: src.main:handler\n"
                             "capabilities: [text]\n"
                             "environment: {LOG_LEVEL: info, RETRIES: 3}\n"
                             "dependencies: []\n"
                             "metadata:\n"
                             "  version: 1.0.0\n"
                             "  sub_agents:\n"
                             "    - name: upper\n"
                             "      description: Upper-cases (private).\n"
                             "      public: false\n";

static void test_pixell_kit_manifest(void **state)
{
    (void)state;
    par_manifest_t *m = NULL;
    assert_int_equal(parse(pixell, &m), PAR_OK);
    assert_string_equal(m->name, "echo");
    assert_string_equal(m->package_version, "1.0.0");
    assert_string_equal(m->format_version, "1.0");
    assert_string_equal(m->display_name, "Echo");
    assert_int_equal(m->runtime_kind, PAR_RUNTIME_PYTHON);
    assert_int_equal(m->export_count, 2);
    assert_string_equal(m->exports[0].name, "");
    assert_true(m->exports[0].is_public);
    assert_string_equal(m->exports[1].name, "upper");
    assert_false(m->exports[1].is_public);
    /* a sub-agent without an entrypoint inherits the package's */
    assert_string_equal(m->exports[1].entrypoint, "src.main:handler");
    assert_int_equal(m->environment_count, 2);
    assert_string_equal(m->environment[0].key, "LOG_LEVEL");
    assert_string_equal(m->environment[1].value, "3");
    assert_int_equal(m->capabilities.count, 1);
    assert_int_equal(m->par_abi, -1);
    assert_int_equal(m->warnings.count, 0);
    assert_non_null(par_manifest_export(m, "upper"));
    assert_null(par_manifest_export(m, "nope"));
    par_manifest_free(m);
}

static void test_native_with_par_block(void **state)
{
    (void)state;
    par_manifest_t *m = NULL;
    const char *y =
        "name: text\nruntime: native\nentrypoint: lib/libtext.so:main_fn\n"
        "metadata:\n  version: 2.1.0-rc.1+b5\n  par:\n    requires: \">=1.0.0 <2.0.0\"\n"
        "    abi: 1\n    limits: {timeout_ms: 500, memory_mb: 64, concurrency: 2,"
        " max_input_kb: 8}\n    exports:\n"
        "      - {name: summarize, entrypoint: \"lib/libtext.so:summarize\","
        " public: false}\n";
    assert_int_equal(parse(y, &m), PAR_OK);
    assert_int_equal(m->runtime_kind, PAR_RUNTIME_NATIVE);
    assert_string_equal(m->par_requires, ">=1.0.0 <2.0.0");
    assert_int_equal(m->par_abi, 1);
    assert_int_equal(m->limits.timeout_ms, 500);
    assert_int_equal(m->limits.memory_mb, 64);
    assert_int_equal(m->limits.concurrency, 2);
    assert_int_equal(m->limits.max_input_kb, 8);
    assert_int_equal(m->export_count, 2);
    assert_string_equal(m->exports[1].name, "summarize");
    assert_false(m->exports[1].is_public);
    par_manifest_free(m);
}

static void test_runtime_kinds_and_defaults(void **state)
{
    (void)state;
    par_manifest_t *m = NULL;
    assert_int_equal(parse("name: a\nruntime: python3.9\nentrypoint: m:f\nmetadata: {version: "
                           "0.0.1}\n",
                           &m),
                     PAR_OK);
    assert_int_equal(m->runtime_kind, PAR_RUNTIME_PYTHON);
    par_manifest_free(m);
    assert_int_equal(
        parse("name: a\nruntime: node18\nentrypoint: m:f\nmetadata: {version: 1.0.0}\n", &m),
        PAR_OK);
    assert_int_equal(m->runtime_kind, PAR_RUNTIME_OTHER);
    par_manifest_free(m);
    /* runtime omitted: pixell-kit's default */
    assert_int_equal(parse("name: a\nmetadata: {version: 1.0.0}\n", &m), PAR_OK);
    assert_string_equal(m->runtime, "python3.11");
    assert_int_equal(m->export_count, 0);
    par_manifest_free(m);
}

static void test_unknown_top_level_key_warns(void **state)
{
    (void)state;
    par_manifest_t *m = NULL;
    assert_int_equal(parse("name: a\nfuture_field: 1\nmetadata: {version: 1.0.0}\n", &m), PAR_OK);
    assert_int_equal(m->warnings.count, 1);
    assert_non_null(strstr(m->warnings.items[0], "future_field"));
    par_manifest_free(m);
}

static void test_rules(void **state)
{
    (void)state;
    refused("metadata: {version: 1.0.0}\n", "agent.yaml: name: required field missing");
    refused("name: Bad_Name\nmetadata: {version: 1.0.0}\n", "agent.yaml: name: must match");
    refused("name: 1abc\nmetadata: {version: 1.0.0}\n", "name: must match");
    refused("name: a\n", "metadata.version: required field missing");
    refused("name: a\nmetadata: {version: 1.0}\n", "metadata.version: must be a semantic");
    refused("name: a\nmetadata: {version: 01.0.0}\n", "metadata.version");
    refused("name: a\nmetadata: {version: 1.0.0-}\n", "metadata.version");
    refused("name: a\nmetadata: [1]\n", "metadata: must be a mapping");
    refused("name: [a]\nmetadata: {version: 1.0.0}\n", "name: must be a string");
    refused("name: a\nentrypoint: nocolon\nmetadata: {version: 1.0.0}\n",
            "entrypoint: must be module:function");
    refused("name: a\nentrypoint: 'src.main:'\nmetadata: {version: 1.0.0}\n", "entrypoint");
    refused("name: a\nentrypoint: 'src..main:f'\nmetadata: {version: 1.0.0}\n",
            "not a dotted Python module name");
    refused("name: a\nruntime: native\nentrypoint: ../lib.so:f\nmetadata: {version: 1.0.0}\n",
            "must not contain '..'");
    refused("name: a\nruntime: native\nentrypoint: /abs/lib.so:f\nmetadata: {version: 1.0.0}\n",
            "must be relative");
    refused("name: a\nruntime: native\nentrypoint: lib/x.txt:f\nmetadata: {version: 1.0.0}\n",
            "must end in .so");
    refused("name: a\nruntime: native\nentrypoint: lib/x.so:1f\nmetadata: {version: 1.0.0}\n",
            "not a valid function or symbol name");
    refused("name: a\ncapabilities: net\nmetadata: {version: 1.0.0}\n",
            "capabilities: must be a list");
    refused("name: a\nenvironment: [A]\nmetadata: {version: 1.0.0}\n", "environment: must be");
    refused("name: a\nenvironment: {1BAD: x}\nmetadata: {version: 1.0.0}\n", "environment.1BAD");
}

static void test_sub_agent_rules(void **state)
{
    (void)state;
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: ok1}\n    - {name: ok2}\n    - {name: Bad}\n",
            "agent.yaml: metadata.sub_agents[2].name: must match ^[a-z][a-z0-9-]*$");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: x}\n    - {name: x}\n",
            "metadata.sub_agents[1].name: duplicate sub-agent 'x'");
    refused("name: a\nmetadata:\n  version: 1.0.0\n  sub_agents:\n    - {name: x}\n",
            "metadata.sub_agents[0].entrypoint: required");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {description: no name}\n",
            "metadata.sub_agents[0].name: required field missing");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: x, public: maybe}\n",
            "metadata.sub_agents[0].public: must be true or false");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents: {x: 1}\n",
            "metadata.sub_agents: must be a list");
}

static void test_par_block_rules(void **state)
{
    (void)state;
    refused("name: a\nmetadata:\n  version: 1.0.0\n  par:\n    limits: {timeout_ms: -5}\n",
            "metadata.par.limits.timeout_ms: must be a non-negative integer");
    refused("name: a\nmetadata:\n  version: 1.0.0\n  par:\n    limits: {speed: 5}\n",
            "metadata.par.limits.speed: unknown limit");
    refused("name: a\nmetadata:\n  version: 1.0.0\n  par:\n    abi: zero\n", "metadata.par.abi");
    refused("name: a\nmetadata:\n  version: 1.0.0\n  par:\n    abi: 0\n",
            "metadata.par.abi: must be a positive integer");
    refused("name: a\nmetadata:\n  version: 1.0.0\n  par:\n    exports:\n      - {name: x}\n",
            "metadata.par.exports[0].entrypoint: required field missing");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents: [{name: x}]\n"
            "  par:\n    exports:\n      - {name: x, entrypoint: 'm:g'}\n",
            "metadata.par.exports[0].name: 'x' is already");
    refused("name: a\nmetadata:\n  version: 1.0.0\n  par: 5\n", "metadata.par: must be a mapping");
}

static void test_many_errors_at_once(void **state)
{
    (void)state;
    refused("name: BAD\nentrypoint: x\nmetadata: {version: nope}\n", "name: must match");
    assert_non_null(strstr(errs.data, "entrypoint: must be"));
    assert_non_null(strstr(errs.data, "metadata.version: must be"));
}

static void test_syntax_and_shape(void **state)
{
    (void)state;
    refused("name: [unclosed\n", "agent.yaml: line");
    refused("- just\n- a list\n", "must be a mapping");
    refused("", "agent.yaml");
    char *big = malloc(PAR_MANIFEST_MAX_BYTES + 16);
    memset(big, '#', PAR_MANIFEST_MAX_BYTES + 15);
    big[PAR_MANIFEST_MAX_BYTES + 15] = '\0';
    refused(big, "larger than");
    free(big);
}

static void test_helpers(void **state)
{
    (void)state;
    assert_true(par_manifest_valid_name("a", 1));
    assert_true(par_manifest_valid_name("my-agent-2", 10));
    assert_false(par_manifest_valid_name("", 0));
    assert_false(par_manifest_valid_name("-a", 2));
    assert_false(par_manifest_valid_name("a_b", 3));
    const char *good[] = {"0.0.0",
                          "1.2.3",
                          "10.20.30",
                          "1.0.0-alpha",
                          "1.0.0-alpha.1",
                          "1.0.0-0.3.7",
                          "1.0.0+20130313144700",
                          "1.0.0-beta+exp.sha.5114f85"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        if (!par_manifest_valid_semver(good[i], strlen(good[i])))
            fail_msg("rejected %s", good[i]);
    const char *bad[] = {"1",      "1.2",    "1.2.3.4", "01.2.3",     "1.02.3", "1.2.3-01",
                         "1.2.3-", "1.2.3+", "v1.2.3",  "1.2.3-a..b", " 1.2.3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (par_manifest_valid_semver(bad[i], strlen(bad[i])))
            fail_msg("accepted %s", bad[i]);
}

static int setup(void **state)
{
    (void)state;
    par_buf_init(&errs, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    par_buf_free(&errs);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pixell_kit_manifest),
        cmocka_unit_test(test_native_with_par_block),
        cmocka_unit_test(test_runtime_kinds_and_defaults),
        cmocka_unit_test(test_unknown_top_level_key_warns),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_sub_agent_rules),
        cmocka_unit_test(test_par_block_rules),
        cmocka_unit_test(test_many_errors_at_once),
        cmocka_unit_test(test_syntax_and_shape),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
