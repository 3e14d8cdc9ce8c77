/*
 * Unit tests for pkg/manifest.c: every rule of agent.yaml (DESIGN.md section 2),
 * good and bad. A refused input must give PAR_E_INVALID_PACKAGE, no manifest,
 * and an error line naming the field path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <par/par.h>

#include "pkg/manifest.h"

static par_buf_t errs;

/* Parses `y` (a C string) with errors collected in `errs`. */
static int parse(const char *y, par_manifest_t **m)
{
    par_buf_reset(&errs);
    int rc = par_manifest_parse(y, strlen(y), m, &errs);
    par_buf_terminate(&errs);
    return rc;
}

static const char *errtext(void)
{
    return errs.data ? errs.data : "";
}

/* Parses `y`, which must be valid, and returns the manifest (caller frees). */
static par_manifest_t *accepted(const char *y)
{
    par_manifest_t *m = NULL;
    int rc = parse(y, &m);
    if (rc != PAR_OK || m == NULL)
        fail_msg("refused (%d):\n%s\n-- errors:\n%s", rc, y, errtext());
    assert_int_equal(errs.len, 0);
    return m;
}

/* Asserts that parsing `y` fails with PAR_E_INVALID_PACKAGE, hands out no
 * manifest, and that the error text contains `needle`. */
static void refused(const char *y, const char *needle)
{
    par_manifest_t *m = (par_manifest_t *)&errs; /* must be overwritten with NULL */
    int rc = parse(y, &m);
    if (rc != PAR_E_INVALID_PACKAGE || m != NULL)
        fail_msg("not refused (%d):\n%s", rc, y);
    if (strstr(errtext(), needle) == NULL)
        fail_msg("errors for\n%s\nlack '%s':\n%s", y, needle, errtext());
    /* every line is "agent.yaml: ...\n" */
    for (const char *l = errtext(); *l; l = strchr(l, '\n') + 1) {
        if (strncmp(l, "agent.yaml: ", 12) != 0 || strchr(l, '\n') == NULL)
            fail_msg("malformed error line in:\n%s", errtext());
    }
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

#define MD "metadata: {version: 1.0.0}\n"

/* ---- valid manifests ------------------------------------------------------------------- */

static void test_minimal_manifest(void **state)
{
    par_manifest_t *m = accepted("name: a\n" MD);
    assert_string_equal(m->name, "a");
    assert_string_equal(m->format_version, "1.0");
    assert_string_equal(m->display_name, "");
    assert_string_equal(m->description, "");
    assert_string_equal(m->author, "");
    assert_string_equal(m->license, "");
    assert_null(m->entrypoint);
    assert_string_equal(m->runtime, "python3.11"); /* pixell-kit's default */
    assert_int_equal(m->runtime_kind, PAR_RUNTIME_PYTHON);
    assert_string_equal(m->package_version, "1.0.0");
    assert_int_equal(m->capabilities.count, 0);
    assert_int_equal(m->dependencies.count, 0);
    assert_int_equal(m->environment_count, 0);
    assert_null(m->par_requires);
    assert_int_equal(m->par_abi, -1);
    assert_int_equal(m->limits.timeout_ms, 0);
    assert_int_equal(m->limits.memory_mb, 0);
    assert_int_equal(m->limits.concurrency, 0);
    assert_int_equal(m->limits.max_input_kb, 0);
    assert_int_equal(m->export_count, 0);
    assert_null(par_manifest_export(m, ""));
    assert_false(m->has_rest || m->has_a2a || m->has_ui);
    assert_int_equal(m->warnings.count, 0);
    par_manifest_free(m);
}

/* The agent.yaml that `pixell init` / `pixell build` users write. */
static const char pixell[] = "name: echo\n"
                             "display_name: Echo\n"
                             "description: Returns its input unchanged.\n"
                             "author: Pixell\n"
                             "license: MIT\n"
                             "runtime: python3.11\n"
                             "entrypoint: src.main:handler\n"
                             "metadata:\n"
                             "  version: 1.0.0\n"
                             "  sub_agents:\n"
                             "    - name: upper\n"
                             "      description: x\n"
                             "      public: false\n";

static void test_pixell_kit_manifest(void **state)
{
    par_manifest_t *m = accepted(pixell);
    assert_string_equal(m->name, "echo");
    assert_string_equal(m->display_name, "Echo");
    assert_string_equal(m->description, "Returns its input unchanged.");
    assert_string_equal(m->author, "Pixell");
    assert_string_equal(m->license, "MIT");
    assert_string_equal(m->runtime, "python3.11");
    assert_int_equal(m->runtime_kind, PAR_RUNTIME_PYTHON);
    assert_string_equal(m->entrypoint, "src.main:handler");
    assert_string_equal(m->package_version, "1.0.0");
    assert_string_equal(m->format_version, "1.0");

    assert_int_equal(m->export_count, 2);
    const par_export_t *main_ex = &m->exports[0];
    assert_string_equal(main_ex->name, "");
    assert_string_equal(main_ex->entrypoint, "src.main:handler");
    assert_string_equal(main_ex->description, "Returns its input unchanged.");
    assert_true(main_ex->is_public);
    const par_export_t *up = &m->exports[1];
    assert_string_equal(up->name, "upper");
    assert_string_equal(up->description, "x");
    assert_false(up->is_public);
    /* a sub-agent without its own entrypoint uses the package's */
    assert_string_equal(up->entrypoint, "src.main:handler");

    assert_ptr_equal(par_manifest_export(m, ""), main_ex);
    assert_ptr_equal(par_manifest_export(m, "upper"), up);
    assert_null(par_manifest_export(m, "lower"));
    assert_null(par_manifest_export(m, NULL));
    assert_null(par_manifest_export(NULL, ""));
    assert_int_equal(m->warnings.count, 0);
    par_manifest_free(m);
}

/* Every pixell-kit top-level field, including those PAR only records. */
static void test_pixell_kit_all_fields(void **state)
{
    par_manifest_t *m = accepted("version: \"1.0\"\n"
                                 "name: full-agent-2\n"
                                 "display_name: Full\n"
                                 "description: d\n"
                                 "author: a\n"
                                 "license: Apache-2.0\n"
                                 "entrypoint: src.main:handle\n"
                                 "runtime: python3.9\n"
                                 "capabilities: [text, network]\n"
                                 "environment:\n"
                                 "  ZED: last-in-alphabet\n"
                                 "  API_URL: https://example.com/x?a=1\n"
                                 "  RETRIES: 3\n"
                                 "  DEBUG: false\n"
                                 "  EMPTY: \"\"\n"
                                 "dependencies: [\"requests>=2.0\", \"pydantic==2.5.0\"]\n"
                                 "mcp: {enabled: false}\n"
                                 "rest: {entry: \"src.rest:mount\"}\n"
                                 "a2a: {service: \"src.a2a:serve\"}\n"
                                 "ui: {path: dist}\n"
                                 "ui_spec_version: \"1\"\n"
                                 "required_ui_capabilities: [forms]\n"
                                 "metadata:\n"
                                 "  version: 0.3.0\n"
                                 "  homepage: https://example.com\n"
                                 "  tags: [demo]\n");
    assert_string_equal(m->format_version, "1.0");
    assert_int_equal(m->runtime_kind, PAR_RUNTIME_PYTHON);
    assert_int_equal(m->capabilities.count, 2);
    assert_string_equal(m->capabilities.items[0], "text");
    assert_string_equal(m->capabilities.items[1], "network");
    /* environment: file order, every scalar as text */
    assert_int_equal(m->environment_count, 5);
    assert_string_equal(m->environment[0].key, "ZED");
    assert_string_equal(m->environment[1].key, "API_URL");
    assert_string_equal(m->environment[1].value, "https://example.com/x?a=1");
    assert_string_equal(m->environment[2].value, "3");
    assert_string_equal(m->environment[3].value, "false");
    assert_string_equal(m->environment[4].key, "EMPTY");
    assert_string_equal(m->environment[4].value, "");
    assert_int_equal(m->dependencies.count, 2);
    assert_string_equal(m->dependencies.items[1], "pydantic==2.5.0");
    assert_true(m->has_rest);
    assert_true(m->has_a2a);
    assert_true(m->has_ui);
    /* the main export carries the package's capabilities */
    assert_int_equal(m->exports[0].capabilities.count, 2);
    /* known pixell-kit keys and extra metadata keys: no warning */
    assert_int_equal(m->warnings.count, 0);
    par_manifest_free(m);
}

static const char native[] = "name: text\n"
                             "runtime: native\n"
                             "entrypoint: lib/libtext.so:main_fn\n"
                             "metadata:\n"
                             "  version: 2.1.0-rc.1+b5\n"
                             "  par:\n"
                             "    requires: \">=1.0.0 <2.0.0\"\n"
                             "    abi: 1\n"
                             "    limits: {timeout_ms: 30000, memory_mb: 256, concurrency: 4,"
                             " max_input_kb: 1024}\n"
                             "    exports:\n"
                             "      - {name: summarize, entrypoint: \"lib/libtext.so:summarize\","
                             " public: false}\n"
                             "      - name: count\n"
                             "        entrypoint: lib/libcount.so:count_words\n"
                             "        description: counts words\n";

static void test_native_with_par_block(void **state)
{
    par_manifest_t *m = accepted(native);
    assert_int_equal(m->runtime_kind, PAR_RUNTIME_NATIVE);
    assert_string_equal(m->runtime, "native");
    assert_string_equal(m->package_version, "2.1.0-rc.1+b5");
    assert_string_equal(m->par_requires, ">=1.0.0 <2.0.0");
    assert_int_equal(m->par_abi, 1);
    assert_int_equal(m->limits.timeout_ms, 30000);
    assert_int_equal(m->limits.memory_mb, 256);
    assert_int_equal(m->limits.concurrency, 4);
    assert_int_equal(m->limits.max_input_kb, 1024);
    assert_int_equal(m->export_count, 3);
    assert_string_equal(m->exports[0].name, "");
    assert_string_equal(m->exports[0].entrypoint, "lib/libtext.so:main_fn");
    assert_string_equal(m->exports[1].name, "summarize");
    assert_string_equal(m->exports[1].entrypoint, "lib/libtext.so:summarize");
    assert_false(m->exports[1].is_public);
    assert_string_equal(m->exports[1].description, "");
    assert_string_equal(m->exports[2].name, "count");
    assert_true(m->exports[2].is_public); /* an export's default */
    assert_string_equal(m->exports[2].description, "counts words");
    par_manifest_free(m);
}

static void test_export_order_and_inheritance(void **state)
{
    par_manifest_t *m = accepted("name: pkg\n"
                                 "description: main one\n"
                                 "runtime: native\n"
                                 "entrypoint: lib/libp.so:main_fn\n"
                                 "metadata:\n"
                                 "  version: 1.0.0\n"
                                 "  par:\n" /* before sub_agents in the file: order still holds */
                                 "    exports: [{name: z-last, entrypoint: 'lib/libp.so:z'}]\n"
                                 "  sub_agents:\n"
                                 "    - {name: first, capabilities: [a, b]}\n"
                                 "    - {name: second, entrypoint: 'lib/libq.so:second_fn'}\n");
    assert_int_equal(m->export_count, 4);
    assert_string_equal(m->exports[0].name, "");
    assert_string_equal(m->exports[0].description, "main one");
    assert_string_equal(m->exports[1].name, "first");
    assert_string_equal(m->exports[1].entrypoint, "lib/libp.so:main_fn"); /* inherited */
    assert_false(m->exports[1].is_public);                                /* no `public`: private */
    assert_int_equal(m->exports[1].capabilities.count, 2);
    assert_string_equal(m->exports[1].capabilities.items[1], "b");
    assert_string_equal(m->exports[2].name, "second");
    assert_string_equal(m->exports[2].entrypoint, "lib/libq.so:second_fn"); /* its own */
    assert_string_equal(m->exports[3].name, "z-last");
    par_manifest_free(m);

    /* No top-level entrypoint: no main export; sub-agents with their own are fine. */
    m = accepted("name: pkg\nruntime: native\nmetadata:\n  version: 1.0.0\n"
                 "  sub_agents: [{name: only, entrypoint: 'libo.so:only'}]\n");
    assert_int_equal(m->export_count, 1);
    assert_string_equal(m->exports[0].name, "only");
    assert_null(par_manifest_export(m, ""));
    par_manifest_free(m);
}

static void test_runtime_kinds(void **state)
{
    static const struct {
        const char *runtime;
        par_runtime_kind_t kind;
    } cases[] = {
        {"python3.9", PAR_RUNTIME_PYTHON},  {"python3.11", PAR_RUNTIME_PYTHON},
        {"python3.12", PAR_RUNTIME_PYTHON}, {"native", PAR_RUNTIME_NATIVE},
        {"node18", PAR_RUNTIME_OTHER},      {"node20", PAR_RUNTIME_OTHER},
        {"go1.21", PAR_RUNTIME_OTHER},      {"python3", PAR_RUNTIME_OTHER},
        {"python2.7", PAR_RUNTIME_OTHER},   {"python3.x", PAR_RUNTIME_OTHER},
        {"Native", PAR_RUNTIME_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char y[200];
        snprintf(y, sizeof(y), "name: a\nruntime: %s\n" MD, cases[i].runtime);
        par_manifest_t *m = accepted(y);
        assert_string_equal(m->runtime, cases[i].runtime);
        if (m->runtime_kind != cases[i].kind)
            fail_msg("runtime %s: kind %d, want %d", cases[i].runtime, m->runtime_kind,
                     cases[i].kind);
        par_manifest_free(m);
    }
    refused("name: a\nruntime: ''\n" MD, "agent.yaml: runtime: must not be empty");
    refused("name: a\nruntime: [native]\n" MD, "agent.yaml: runtime: must be a string");
}

/* ---- rules, one violation at a time ------------------------------------------------------ */

static void test_name_rules(void **state)
{
    refused(MD, "agent.yaml: name: required field missing");
    refused("name: ~\n" MD, "agent.yaml: name: required field missing");
    refused("name:\n" MD, "agent.yaml: name: required field missing");
    refused("name: Bad_Name\n" MD, "agent.yaml: name: must match ^[a-z][a-z0-9-]*$");
    refused("name: 1abc\n" MD, "agent.yaml: name: must match");
    refused("name: -abc\n" MD, "agent.yaml: name: must match");
    refused("name: a_b\n" MD, "agent.yaml: name: must match");
    refused("name: a.b\n" MD, "agent.yaml: name: must match");
    refused("name: ''\n" MD, "agent.yaml: name: must match");
    refused("name: [a]\n" MD, "agent.yaml: name: must be a string");
    refused("name: {a: 1}\n" MD, "agent.yaml: name: must be a string");
    refused("name: \"a\\0b\"\n" MD, "agent.yaml: name: must not contain NUL characters");

    char y[300], n[80];
    memset(n, 'a', 64);
    n[64] = '\0';
    snprintf(y, sizeof(y), "name: %s\n" MD, n);
    par_manifest_free(accepted(y));
    snprintf(y, sizeof(y), "name: %sb\n" MD, n);
    refused(y, "agent.yaml: name: must be at most 64 characters");
}

static void test_metadata_version_rules(void **state)
{
    refused("name: a\n", "agent.yaml: metadata.version: required field missing");
    refused("name: a\nmetadata:\n", "agent.yaml: metadata.version: required field missing");
    refused("name: a\nmetadata: {homepage: x}\n",
            "agent.yaml: metadata.version: required field missing");
    refused("name: a\nmetadata: {version: ~}\n",
            "agent.yaml: metadata.version: required field missing");
    refused("name: a\nmetadata: [1]\n", "agent.yaml: metadata: must be a mapping");
    refused("name: a\nmetadata: {version: [1]}\n",
            "agent.yaml: metadata.version: must be a string");
    static const char *const bad[] = {"1.0",    "1",       "01.0.0", "1.0.0-", "1.0.0+",
                                      "v1.0.0", "1.0.0.0", "1.0.x",  "latest"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char y[200];
        snprintf(y, sizeof(y), "name: a\nmetadata: {version: '%s'}\n", bad[i]);
        refused(y, "agent.yaml: metadata.version: must be a semantic version");
    }
}

static void test_entrypoint_forms(void **state)
{
    static const char *const py_ok[] = {"main:handler", "src.main:handler", "a.b_c.d9:_f", "_m:F"};
    for (size_t i = 0; i < sizeof(py_ok) / sizeof(*py_ok); i++) {
        char y[200];
        snprintf(y, sizeof(y), "name: a\nentrypoint: '%s'\n" MD, py_ok[i]);
        par_manifest_free(accepted(y));
    }
    static const struct {
        const char *entry, *needle;
    } py_bad[] = {
        {"nocolon", "entrypoint: must be module:function"},
        {"a:b:c", "entrypoint: must be module:function"},
        {":f", "entrypoint: must be module:function"},
        {"m:", "entrypoint: must be module:function"},
        {"src..main:f", "entrypoint: 'src..main' is not a dotted Python module name"},
        {".main:f", "is not a dotted Python module name"},
        {"1mod:f", "is not a dotted Python module name"},
        {"src/main.py:f", "is not a dotted Python module name"},
        {"m:f-g", "entrypoint: 'f-g' is not a valid Python function name"},
        {"m:f()", "is not a valid Python function name"},
    };
    for (size_t i = 0; i < sizeof(py_bad) / sizeof(*py_bad); i++) {
        char y[200];
        snprintf(y, sizeof(y), "name: a\nentrypoint: '%s'\n" MD, py_bad[i].entry);
        refused(y, py_bad[i].needle);
    }

    static const char *const so_ok[] = {"lib/libx.so:sym", "libx.so:_s", "./lib/x.so:s2",
                                        "a/b/c/lib-x.so:s"};
    for (size_t i = 0; i < sizeof(so_ok) / sizeof(*so_ok); i++) {
        char y[200];
        snprintf(y, sizeof(y), "name: a\nruntime: native\nentrypoint: '%s'\n" MD, so_ok[i]);
        par_manifest_free(accepted(y));
    }
    static const struct {
        const char *entry, *needle;
    } so_bad[] = {
        {"lib/x.so", "entrypoint: must be path/lib.so:symbol"},
        {"../x.so:f", "entrypoint: library path must not contain '..'"},
        {"lib/../../x.so:f", "entrypoint: library path must not contain '..'"},
        {"lib/..:f", "library path must not contain '..'"},
        {"/abs/x.so:f", "entrypoint: library path must be relative"},
        {"lib/x.txt:f", "entrypoint: library path must end in .so"},
        {"lib/x.so.1:f", "library path must end in .so"},
        {"lib/.so:f", "library path must end in .so"},
        {"lib/x.so:1f", "entrypoint: '1f' is not a valid C symbol name"},
        {"lib/x.so:sym-bol", "is not a valid C symbol name"},
    };
    for (size_t i = 0; i < sizeof(so_bad) / sizeof(*so_bad); i++) {
        char y[200];
        snprintf(y, sizeof(y), "name: a\nruntime: native\nentrypoint: '%s'\n" MD, so_bad[i].entry);
        refused(y, so_bad[i].needle);
    }
    /* a ".." inside a file name is not a path component */
    par_manifest_free(accepted("name: a\nruntime: native\nentrypoint: 'lib/x..y.so:f'\n" MD));
    /* the form is checked against the package's runtime: a python form is no native one */
    refused("name: a\nruntime: native\nentrypoint: src.main:handler\n" MD,
            "entrypoint: library path must end in .so");
    /* runtimes without a loader: only the module:function shape */
    par_manifest_free(accepted("name: a\nruntime: node18\nentrypoint: 'index.js:handler'\n" MD));
    refused("name: a\nruntime: node18\nentrypoint: index.js\n" MD,
            "agent.yaml: entrypoint: must be module:function");
    refused("name: a\nentrypoint: [m, f]\n" MD, "agent.yaml: entrypoint: must be a string");

    /* the same rules at sub-agent and export paths */
    refused("name: a\nruntime: native\nentrypoint: 'l.so:f'\nmetadata:\n  version: 1.0.0\n"
            "  sub_agents: [{name: s, entrypoint: '../l.so:g'}]\n",
            "agent.yaml: metadata.sub_agents[0].entrypoint: library path must not contain '..'");
    refused("name: a\nruntime: native\nmetadata:\n  version: 1.0.0\n"
            "  par: {exports: [{name: e, entrypoint: 'l.so'}]}\n",
            "agent.yaml: metadata.par.exports[0].entrypoint: must be path/lib.so:symbol");
}

static void test_sub_agent_rules(void **state)
{
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: ok1}\n    - {name: ok2}\n    - {name: Bad}\n",
            "agent.yaml: metadata.sub_agents[2].name: must match ^[a-z][a-z0-9-]*$\n");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: x}\n    - {name: y}\n    - {name: x}\n",
            "agent.yaml: metadata.sub_agents[2].name: duplicate sub-agent 'x'");
    refused("name: a\nmetadata:\n  version: 1.0.0\n  sub_agents:\n    - {name: x}\n",
            "agent.yaml: metadata.sub_agents[0].entrypoint: required: the package has no "
            "top-level entrypoint");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {description: no name}\n",
            "agent.yaml: metadata.sub_agents[0].name: required field missing");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: ~}\n",
            "agent.yaml: metadata.sub_agents[0].name: required field missing");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: x, public: maybe}\n",
            "agent.yaml: metadata.sub_agents[0].public: must be true or false");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: x, capabilities: net}\n",
            "agent.yaml: metadata.sub_agents[0].capabilities: must be a list of strings");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: x, description: [d]}\n",
            "agent.yaml: metadata.sub_agents[0].description: must be a string");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents: {x: 1}\n",
            "agent.yaml: metadata.sub_agents: must be a list");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents: [x]\n",
            "agent.yaml: metadata.sub_agents[0]: must be a mapping");

    /* a bad name does not hide the sub-agent's other problems */
    refused("name: a\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: Bad, public: maybe}\n",
            "metadata.sub_agents[0].name: must match");
    assert_non_null(strstr(errtext(), "metadata.sub_agents[0].public: must be true or false"));
    assert_non_null(strstr(errtext(), "metadata.sub_agents[0].entrypoint: required"));
}

static void test_par_block_rules(void **state)
{
#define PAR "name: a\nruntime: native\nmetadata:\n  version: 1.0.0\n  par:\n"
    refused(PAR "    limits: {timeout_ms: -5}\n",
            "agent.yaml: metadata.par.limits.timeout_ms: must be a non-negative integer");
    refused(PAR "    limits: {memory_mb: 1.5}\n",
            "agent.yaml: metadata.par.limits.memory_mb: must be a non-negative integer");
    refused(PAR "    limits: {concurrency: 0x10}\n",
            "agent.yaml: metadata.par.limits.concurrency: must be a non-negative integer");
    refused(PAR "    limits: {max_input_kb: 4294967296}\n",
            "agent.yaml: metadata.par.limits.max_input_kb: must be a non-negative integer");
    refused(PAR "    limits: {timeout_ms: [1]}\n",
            "agent.yaml: metadata.par.limits.timeout_ms: must be a non-negative integer");
    refused(PAR "    limits: {timeout_ms: ~}\n",
            "agent.yaml: metadata.par.limits.timeout_ms: must be a non-negative integer");
    refused(PAR "    limits: {speed: 5}\n", "agent.yaml: metadata.par.limits.speed: unknown limit");
    refused(PAR "    limits: [1]\n", "agent.yaml: metadata.par.limits: must be a mapping");
    refused(PAR "    abi: 0\n", "agent.yaml: metadata.par.abi: must be a positive integer");
    refused(PAR "    abi: -1\n", "agent.yaml: metadata.par.abi: must be a positive integer");
    refused(PAR "    abi: one\n", "agent.yaml: metadata.par.abi: must be a positive integer");
    refused(PAR "    abi: 3000000000\n",
            "agent.yaml: metadata.par.abi: must be a positive integer");
    refused(PAR "    requires: ''\n", "agent.yaml: metadata.par.requires: must be a non-empty");
    refused(PAR "    requires: [\">=1\"]\n", "agent.yaml: metadata.par.requires: must be a string");
    refused(PAR "    exports:\n      - {name: x}\n",
            "agent.yaml: metadata.par.exports[0].entrypoint: required field missing");
    refused(PAR "    exports:\n      - {entrypoint: 'l.so:f'}\n",
            "agent.yaml: metadata.par.exports[0].name: required field missing");
    refused(PAR "    exports:\n      - {name: X, entrypoint: 'l.so:f'}\n",
            "agent.yaml: metadata.par.exports[0].name: must match ^[a-z][a-z0-9-]*$");
    refused(PAR "    exports:\n      - {name: x, entrypoint: 'l.so:f', public: 1}\n",
            "agent.yaml: metadata.par.exports[0].public: must be true or false");
    refused(PAR "    exports:\n      - {name: x, entrypoint: 'l.so:f'}\n"
                "      - {name: x, entrypoint: 'l.so:g'}\n",
            "agent.yaml: metadata.par.exports[1].name: 'x' is already the name of a sub-agent");
    refused("name: a\nruntime: native\nentrypoint: 'l.so:f'\nmetadata:\n  version: 1.0.0\n"
            "  sub_agents: [{name: x}]\n"
            "  par:\n    exports:\n      - {name: x, entrypoint: 'l.so:g'}\n",
            "agent.yaml: metadata.par.exports[0].name: 'x' is already the name of a sub-agent");
    refused(PAR "    exports: {name: x}\n", "agent.yaml: metadata.par.exports: must be a list");
    refused(PAR "    exports: [x]\n", "agent.yaml: metadata.par.exports[0]: must be a mapping");
    refused("name: a\nmetadata:\n  version: 1.0.0\n  par: 5\n",
            "agent.yaml: metadata.par: must be a mapping");

    /* limits at the edges */
    par_manifest_t *m = accepted(PAR "    limits: {timeout_ms: 0, memory_mb: 4294967295}\n"
                                     "    abi: 2147483647\n");
    assert_int_equal(m->limits.timeout_ms, 0);
    assert_int_equal(m->limits.memory_mb, UINT32_MAX);
    assert_int_equal(m->par_abi, 2147483647);
    par_manifest_free(m);
#undef PAR
}

static void test_wrong_types(void **state)
{
    refused("name: a\ncapabilities: network\n" MD, "agent.yaml: capabilities: must be a list");
    refused("name: a\ncapabilities: [a, [b]]\n" MD,
            "agent.yaml: capabilities[1]: must be a string");
    refused("name: a\ncapabilities: [a, ~]\n" MD, "agent.yaml: capabilities[1]: must be a string");
    refused("name: a\ndependencies: {requests: 2}\n" MD,
            "agent.yaml: dependencies: must be a list");
    refused("name: a\nenvironment: [A=1]\n" MD, "agent.yaml: environment: must be a mapping");
    refused("name: a\nenvironment: {1BAD: x}\n" MD,
            "agent.yaml: environment.1BAD: must be a valid environment variable name");
    refused("name: a\nenvironment: {A-B: x}\n" MD, "agent.yaml: environment.A-B: must be a valid");
    refused("name: a\nenvironment: {A: [1]}\n" MD,
            "agent.yaml: environment.A: must be a string, number or boolean");
    refused("name: a\nenvironment: {A: ~}\n" MD, "agent.yaml: environment.A: must have a value");
    refused("name: a\ndescription: [x]\n" MD, "agent.yaml: description: must be a string");
    refused("name: a\ndisplay_name: {x: 1}\n" MD, "agent.yaml: display_name: must be a string");
    refused("name: a\nauthor: [x]\n" MD, "agent.yaml: author: must be a string");
    refused("name: a\nlicense: [x]\n" MD, "agent.yaml: license: must be a string");
    refused("name: a\nversion: [1]\n" MD, "agent.yaml: version: must be a string");
    /* a key with control characters cannot forge a second log line */
    refused("name: a\nenvironment: {\"A\\nagent.yaml: forged\": x}\n" MD,
            "agent.yaml: environment.A?agent.yaml: forged: must be a valid");
}

static void test_booleans(void **state)
{
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    for (size_t i = 0; i < 3; i++) {
        char y[200];
        snprintf(y, sizeof(y),
                 "name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n"
                 "  sub_agents: [{name: p, public: %s}, {name: q, public: %s}]\n",
                 yes[i], no[i]);
        par_manifest_t *m = accepted(y);
        assert_true(m->exports[1].is_public);
        assert_false(m->exports[2].is_public);
        par_manifest_free(m);
    }
    /* yes/no/on/off are booleans, as PyYAML (pixell-kit) reads them */
    par_manifest_t *m = accepted("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n"
                                 "  sub_agents: [{name: p, public: no}, {name: q, public: off},"
                                 " {name: r, public: yes}]\n");
    assert_false(m->exports[1].is_public);
    assert_false(m->exports[2].is_public);
    assert_true(m->exports[3].is_public);
    par_manifest_free(m);
    /* numbers, quoted words and lists are not */
    static const char *const bad[] = {"1", "0", "[true]", "'false'", "\"no\"", "nope", "~x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char y[200];
        snprintf(y, sizeof(y),
                 "name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n"
                 "  sub_agents: [{name: p, public: %s}]\n",
                 bad[i]);
        refused(y, "agent.yaml: metadata.sub_agents[0].public: must be true or false");
    }
}

/* YAML nulls count as absent: optional fields take their defaults. */
static void test_null_means_absent(void **state)
{
    par_manifest_t *m = accepted("name: a\nversion: ~\ndescription:\ndisplay_name: null\n"
                                 "entrypoint: ~\nruntime: ~\ncapabilities:\nenvironment: ~\n"
                                 "dependencies: ~\nrest: ~\n"
                                 "metadata:\n  version: 1.0.0\n  sub_agents: ~\n  par: ~\n");
    assert_string_equal(m->format_version, "1.0");
    assert_string_equal(m->description, "");
    assert_string_equal(m->display_name, "");
    assert_null(m->entrypoint);
    assert_string_equal(m->runtime, "python3.11");
    assert_int_equal(m->capabilities.count, 0);
    assert_false(m->has_rest);
    assert_int_equal(m->export_count, 0);
    par_manifest_free(m);
    /* quoted, "~" and "null" are strings */
    m = accepted("name: a\ndescription: \"~\"\nauthor: 'null'\n" MD);
    assert_string_equal(m->description, "~");
    assert_string_equal(m->author, "null");
    par_manifest_free(m);
}

/* ---- reporting --------------------------------------------------------------------------- */

static void test_many_errors_at_once(void **state)
{
    refused("name: BAD\n"
            "entrypoint: x\n"
            "capabilities: net\n"
            "metadata:\n"
            "  version: nope\n"
            "  sub_agents: [{name: ok}, {name: ok}]\n"
            "  par: {abi: 0, limits: {timeout_ms: -1, bogus: 1}}\n",
            "agent.yaml: name: must match");
    static const char *const all[] = {
        "agent.yaml: entrypoint: must be module:function",
        "agent.yaml: capabilities: must be a list of strings",
        "agent.yaml: metadata.version: must be a semantic version",
        "agent.yaml: metadata.sub_agents[1].name: duplicate sub-agent 'ok'",
        "agent.yaml: metadata.par.abi: must be a positive integer",
        "agent.yaml: metadata.par.limits.timeout_ms: must be a non-negative integer",
        "agent.yaml: metadata.par.limits.bogus: unknown limit",
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(*all); i++)
        if (strstr(errtext(), all[i]) == NULL)
            fail_msg("missing '%s' in:\n%s", all[i], errtext());
    assert_int_equal(count_lines(errtext()), 8);
}

/* A file with thousands of problems yields a bounded report. */
static void test_error_report_is_capped(void **state)
{
    par_buf_t y;
    par_buf_init(&y, 0);
    par_buf_appends(&y, "name: a\n" MD "capabilities:\n");
    for (int i = 0; i < 500; i++)
        par_buf_appends(&y, "  - [x]\n");
    par_buf_terminate(&y);
    refused(y.data, "agent.yaml: capabilities[0]: must be a string");
    assert_non_null(strstr(errtext(), "capabilities[99]: must be a string"));
    assert_null(strstr(errtext(), "capabilities[100]:"));
    assert_non_null(strstr(errtext(), "agent.yaml: 400 more problems not shown\n"));
    assert_int_equal(count_lines(errtext()), 101);
    par_buf_free(&y);
}

static void test_unknown_keys_warn(void **state)
{
    par_manifest_t *m = accepted("name: a\nfoo: 1\npar: {abi: 1}\n" MD);
    assert_int_equal(m->warnings.count, 2);
    assert_string_equal(m->warnings.items[0], "agent.yaml: foo: unknown top-level key, ignored");
    assert_string_equal(m->warnings.items[1], "agent.yaml: par: unknown top-level key, ignored");
    /* not read as metadata.par */
    assert_int_equal(m->par_abi, -1);
    par_manifest_free(m);

    /* other metadata keys are the ecosystem's: ignored */
    m = accepted("name: a\nmetadata:\n  version: 1.0.0\n  owner: team\n  tags: [x]\n");
    assert_int_equal(m->warnings.count, 0);
    par_manifest_free(m);

    /* metadata.par and its exports are PAR's: strict (test_mistakes has the table) */
    refused("name: a\nruntime: native\nmetadata:\n  version: 1.0.0\n"
            "  par:\n    limit: {timeout_ms: 1}\n"
            "    exports: [{name: e, entrypoint: 'l.so:f', pubic: false}]\n",
            "agent.yaml: metadata.par.limit: unknown key `limit` (did you mean `limits`?)");
    assert_non_null(strstr(errtext(), "agent.yaml: metadata.par.exports[0].pubic: unknown key "
                                      "`pubic` (did you mean `public`?)"));

    /* keys are shown safely; keys must be names */
    m = accepted("name: a\n\"x\\ty\": 1\n" MD);
    assert_int_equal(m->warnings.count, 1);
    assert_string_equal(m->warnings.items[0], "agent.yaml: x?y: unknown top-level key, ignored");
    par_manifest_free(m);
    refused("name: a\n? [k]\n: v\n" MD, "a mapping key must be a plain name");
}

/* Runs a parse with stderr redirected and returns how many bytes reached it. */
static long stderr_bytes_of_parse(const char *y)
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), 2) >= 0);
    par_manifest_t *m = NULL;
    parse(y, &m);
    par_manifest_free(m);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fseek(tmp, 0, SEEK_END);
    long n = ftell(tmp);
    fclose(tmp);
    return n;
}

static void test_yaml_syntax_errors(void **state)
{
    refused("name: [unclosed\n",
            "agent.yaml: line 2, column 1: did not find expected ',' or ']': while parsing a "
            "flow sequence at line 1");
    refused("name: a\nmetadata:\n\tversion: 1.0.0\n", "agent.yaml: line 3, column 1: found "
                                                      "character that cannot start any token");
    refused("a: b: c\n", "agent.yaml: line 1, column 5: mapping values are not allowed");
    refused("name: a\nname: b\n" MD, "agent.yaml: line 2, column 1: duplicate key");
    refused("name: \"unterminated\n", "agent.yaml: line ");
    /* the parser prints nothing itself */
    assert_int_equal(stderr_bytes_of_parse("name: [unclosed\n"), 0);
    assert_int_equal(stderr_bytes_of_parse(""), 0);
    assert_int_equal(stderr_bytes_of_parse("a: *nope\n"), 0);
}

static void test_document_shape(void **state)
{
    refused("", "agent.yaml: the document is empty");
    refused("# only a comment\n", "agent.yaml: the document is empty");
    refused("---\n...\n", "agent.yaml: the document is empty");
    refused("~\n", "agent.yaml: the document is empty");
    refused("- just\n- a list\n", "agent.yaml: the document must be a mapping of fields");
    refused("just a scalar\n", "must be a mapping of fields (name, metadata, ...), not a scalar");
    refused("name: a\n" MD "---\nname: b\n" MD,
            "agent.yaml: line 3, column 1: only one YAML document is allowed");
    /* a single document with markers is fine */
    par_manifest_free(accepted("%YAML 1.2\n---\nname: a\n" MD "...\n"));

    par_manifest_t *m = (par_manifest_t *)&errs;
    assert_int_equal(par_manifest_parse(NULL, 0, &m, &errs), PAR_E_INVALID_PACKAGE);
    assert_null(m);
}

static void test_size_limit(void **state)
{
    const char *head = "name: a\n" MD;
    size_t hl = strlen(head);
    char *big = malloc(PAR_MANIFEST_MAX_BYTES + 2);
    assert_non_null(big);
    /* exactly at the cap: a valid manifest padded with a comment */
    memcpy(big, head, hl);
    big[hl] = '#';
    memset(big + hl + 1, 'x', PAR_MANIFEST_MAX_BYTES - hl - 2);
    big[PAR_MANIFEST_MAX_BYTES - 1] = '\n';
    big[PAR_MANIFEST_MAX_BYTES] = '\0';
    assert_int_equal(strlen(big), PAR_MANIFEST_MAX_BYTES);
    par_manifest_free(accepted(big));
    /* one byte more */
    big[PAR_MANIFEST_MAX_BYTES] = '\n';
    big[PAR_MANIFEST_MAX_BYTES + 1] = '\0';
    refused(big, "agent.yaml: 262145 bytes, larger than the 262144-byte limit");
    assert_int_equal(count_lines(errtext()), 1);
    free(big);
}

/* Anchors, aliases and merge keys resolve as with PyYAML (pixell-kit), within bounds. */
static void test_aliases(void **state)
{
    par_manifest_t *m = accepted("name: a\n"
                                 "entrypoint: m:f\n"
                                 "capabilities: &caps [text, network]\n"
                                 "metadata:\n"
                                 "  version: &v 1.2.3\n"
                                 "  sub_agents:\n"
                                 "    - &base {name: one, public: false, capabilities: *caps}\n"
                                 "    - {<<: *base, name: two}\n");
    assert_int_equal(m->export_count, 3);
    assert_string_equal(m->package_version, "1.2.3");
    assert_string_equal(m->exports[2].name, "two");
    assert_false(m->exports[2].is_public);
    assert_int_equal(m->exports[2].capabilities.count, 2);
    par_manifest_free(m);

    refused("name: a\nmetadata: {version: *nope}\n",
            "agent.yaml: line 2, column 21: found undefined alias");
    refused("name: a\n" MD "x: &x [1, *x]\n",
            "agent.yaml: line 3, column 4: the document nests too deeply");
    /* "billion laughs": 10^6 nodes from a few hundred bytes */
    refused("a: &a [x,x,x,x,x,x,x,x,x,x]\n"
            "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
            "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
            "f: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
            "name: a\n" MD,
            "(with its aliases expanded) has too many nodes");
}

/* Strings are copies: the manifest outlives the input buffer. */
static void test_result_outlives_input(void **state)
{
    char *y = strdup(pixell);
    assert_non_null(y);
    par_manifest_t *m = NULL;
    assert_int_equal(par_manifest_parse(y, strlen(y), &m, NULL), PAR_OK);
    memset(y, 'Z', strlen(y));
    free(y);
    assert_string_equal(m->name, "echo");
    assert_string_equal(m->exports[1].entrypoint, "src.main:handler");
    par_manifest_free(m);
    par_manifest_free(NULL);
}

/* A NULL error buffer: the status alone. */
static void test_null_error_buffer(void **state)
{
    par_manifest_t *m = (par_manifest_t *)&errs;
    const char *y = "name: BAD\n";
    assert_int_equal(par_manifest_parse(y, strlen(y), &m, NULL), PAR_E_INVALID_PACKAGE);
    assert_null(m);
    y = "name: [\n";
    assert_int_equal(par_manifest_parse(y, strlen(y), &m, NULL), PAR_E_INVALID_PACKAGE);
    assert_null(m);
}

/* Parses `len` raw bytes; asserts a refusal whose text contains `needle`. */
static void refused_bytes(const char *y, size_t len, const char *needle)
{
    par_manifest_t *m = (par_manifest_t *)&errs;
    par_buf_reset(&errs);
    assert_int_equal(par_manifest_parse(y, len, &m, &errs), PAR_E_INVALID_PACKAGE);
    par_buf_terminate(&errs);
    assert_null(m);
    if (strstr(errtext(), needle) == NULL)
        fail_msg("errors lack '%s':\n%s", needle, errtext());
}

/* Raw bytes: UTF-8 text of YAML-printable characters only, `len` respected.
 * (Checked before the YAML parser, with PyYAML's rule and a line and column.) */
static void test_encoding(void **state)
{
    static const char with_nul[] = "name: a\0b\n" MD;
    refused_bytes(with_nul, sizeof(with_nul) - 1,
                  "agent.yaml: line 1, column 8: character U+0000 is not allowed in YAML");
    static const char hang[] = "%e\xb8\xb8\xb8!";
    refused_bytes(hang, sizeof(hang) - 1,
                  "agent.yaml: line 1, column 3: byte 0xB8 is not valid UTF-8");
    refused("name: a\nx: \xb8\n" MD, "agent.yaml: line 2, column 4: byte 0xB8 is not valid UTF-8");
    refused("name: \xc0\xaf\n" MD, "line 1, column 7: byte 0xC0 is not valid UTF-8"); /* overlong */
    refused("name: \xed\xa0\x80\n" MD, "byte 0xED is not valid UTF-8");     /* surrogate */
    refused("name: \xf4\x90\x80\x80\n" MD, "byte 0xF4 is not valid UTF-8"); /* > U+10FFFF */
    refused("name: \xe2\x82\n", "byte 0xE2 is not valid UTF-8");            /* truncated */
    refused("name: a\x01\n" MD, "line 1, column 8: character U+0001 is not allowed");
    refused("name: a\x7f\n" MD, "character U+007F is not allowed");
    refused("name: \"\xef\xbf\xbe\"\n" MD, "character U+FFFE is not allowed");
    /* BOM, CRLF, tabs in values and non-ASCII text are fine */
    par_manifest_t *m = accepted("\xef\xbb\xbfname: a\r\ndescription: \"h\xc3\xa9llo \xe2\x9c\x93 "
                                 "\xf0\x9f\x98\x80\"\r\nauthor: \"a\tb\"\r\n" MD);
    assert_string_equal(m->name, "a");
    assert_string_equal(m->description, "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80");
    assert_string_equal(m->author, "a\tb");
    par_manifest_free(m);
    /* only `len` bytes are read: the metadata after them does not exist */
    const char *y = "name: a\n" MD;
    refused_bytes(y, 8, "agent.yaml: metadata.version: required field missing");
}

/* ---- mistakes a person makes (issue: every mistake is named) ------------------------------- */

#define SUB(body)                                                                                  \
    "name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n    - name: p\n" body
#define PARB(body) "name: a\nruntime: native\nmetadata:\n  version: 1.0.0\n  par:\n" body

typedef struct mistake {
    const char *yaml;
    const char *needle; /* in the errors, or in the warnings when `warns` */
    int warns;
} mistake_t;

static void test_mistakes(void **state)
{
    static char long_version[5100], long_sub[300];
    /* 5,000 digits passed once and failed later as "Input/output error" */
    const char *vhead = "name: a\nmetadata:\n  version: 1.0.";
    size_t vl = strlen(vhead);
    memcpy(long_version, vhead, vl);
    memset(long_version + vl, '7', 5000);
    strcpy(long_version + vl + 5000, "\n");
    snprintf(long_sub, sizeof(long_sub), SUB("    - name: %s\n"),
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"); /* 65 */
    const mistake_t table[] = {
        {SUB("      pubic: false\n"),
         "agent.yaml: metadata.sub_agents[0].pubic: unknown key `pubic` (did you mean `public`?)",
         0},
        {SUB("      public: flase\n"),
         "agent.yaml: metadata.sub_agents[0].public: must be true or false", 0},
        {SUB("      public: \"false\"\n"),
         "agent.yaml: metadata.sub_agents[0].public: must be true or false", 0},
        {SUB("      visibility: private\n"),
         "agent.yaml: metadata.sub_agents[0].visibility: unknown key `visibility` (known: name, "
         "description, public, capabilities, entrypoint, skills, input_schema)",
         0},
        {SUB("      entry_point: m:g\n"),
         "metadata.sub_agents[0].entry_point: unknown key "
         "`entry_point` (did you mean `entrypoint`?)",
         0},
        {"name: a\nentrypont: src.main:handler\n" MD,
         "agent.yaml: entrypont: unknown key `entrypont` (did you mean `entrypoint`?)", 0},
        {"name: a\nruntme: python3.11\n" MD,
         "runtme: unknown key `runtme` (did you mean `runtime`?)", 0},
        {"name: a\nNAME: b\n" MD, "NAME: unknown key `NAME`", 0},
        {"name: a\nruntime: pyhton3.11\n" MD, NULL, 0}, /* parses; pkg/compat.c refuses it */
        {"name: a\nmetadata:\n  version: 1.0.0\n  sub_agent:\n    - {name: p, public: false}\n",
         "agent.yaml: metadata.sub_agent: unknown key `sub_agent` (did you mean `sub_agents`?)", 0},
        {"name: a\nmetadata:\n  verison: 1.0.0\n",
         "metadata.verison: unknown key `verison` (did "
         "you mean `version`?)",
         0},
        {PARB("    requries: '>=1'\n"),
         "agent.yaml: metadata.par.requries: unknown key "
         "`requries` (did you mean `requires`?)",
         0},
        {PARB("    isolation: none\n"),
         "agent.yaml: metadata.par.isolation: unknown key "
         "`isolation` (known: requires, abi, limits, exports, "
         "calls, skills, input_schema)",
         0},
        {PARB("    limits: {timeout: 5000}\n"),
         "agent.yaml: metadata.par.limits.timeout: unknown "
         "limit `timeout` (known: timeout_ms,",
         0},
        {PARB("    limits: {cpu: 2}\n"), "agent.yaml: metadata.par.limits.cpu: unknown limit", 0},
        {PARB("    limits: {timeout_ms: ten}\n"),
         "agent.yaml: metadata.par.limits.timeout_ms: must be a non-negative integer", 0},
        {PARB("    exports: [{name: e, entrypoint: 'l.so:f', pubilc: false}]\n"),
         "metadata.par.exports[0].pubilc: unknown key `pubilc` (did you mean `public`?)", 0},
        {PARB("    calls: shop-*\n"), "agent.yaml: metadata.par.calls: must be a list", 0},
        {PARB("    calls: [\"shop *\"]\n"),
         "agent.yaml: metadata.par.calls[0]: 'shop *' is not an agent id pattern", 0},
        {PARB("    calls: [\"\"]\n"), "agent.yaml: metadata.par.calls[0]: '' is not", 0},
        {PARB("    calls: [[a]]\n"), "agent.yaml: metadata.par.calls[0]: must be a string", 0},
        {PARB("    skills: echo\n"), "agent.yaml: metadata.par.skills: must be a non-empty list",
         0},
        {PARB("    skills: []\n"), "agent.yaml: metadata.par.skills: must be a non-empty list", 0},
        {PARB("    skills: [echo]\n"), "agent.yaml: metadata.par.skills[0]: must be a mapping", 0},
        {PARB("    skills: [{id: e, name: E}]\n"),
         "agent.yaml: metadata.par.skills[0]: description is required (a non-empty string)", 0},
        {PARB("    skills: [{id: e, name: E, description: d, tag: [x]}]\n"),
         "agent.yaml: metadata.par.skills[0]: unknown key tag (known: id, name,", 0},
        {PARB("    skills: [{id: e, name: E, description: d, tags: x}]\n"),
         "agent.yaml: metadata.par.skills[0].tags: must be a list of strings", 0},
        {PARB("    skills: [{id: e, name: E, description: d, examples: [[x]]}]\n"),
         "agent.yaml: metadata.par.skills[0].examples: must be a list of strings", 0},
        {PARB("    input_schema: [a]\n"),
         "agent.yaml: metadata.par.input_schema: must be a JSON Schema object (a mapping", 0},
        {PARB("    input_schema: {type: string}\n"),
         "agent.yaml: metadata.par.input_schema.type: must be object", 0},
        {PARB("    inputschema: {}\n"),
         "agent.yaml: metadata.par.inputschema: unknown key `inputschema` (did you mean "
         "`input_schema`?)",
         0},
        {PARB("    abi: \"one\"\n"), "agent.yaml: metadata.par.abi: must be a positive integer", 0},
        {"name: a\ncapabilities: {network: true}\n" MD, "capabilities: must be a list", 0},
        {"name: a\nmetadata: {version: 1}\n", "metadata.version: must be a semantic version", 0},
        {long_version, "agent.yaml: metadata.version: must be at most 64 characters (it has 5004)",
         0},
        {long_sub, "agent.yaml: metadata.sub_agents[1].name: must be at most 64 characters", 0},
        {"name: a\nversion: \"1.00000000000000000000000000000000000000000000000000000000000000000"
         "0\"\n" MD,
         "agent.yaml: version: must be at most 64 characters", 0},
        {"name: a\nruntime: python3.11111111111111111111111111111111111111111111111111111111111"
         "11111\n" MD,
         "agent.yaml: runtime: must be at most 64 characters", 0},
        /* far from any known key: a warning, the package deploys */
        {"name: a\nhomepage: https://example.com\n" MD,
         "agent.yaml: homepage: unknown top-level key, ignored", 1},
        {"name: a\nx-team: core\n" MD, "agent.yaml: x-team: unknown top-level key, ignored", 1},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(*table); i++) {
        const mistake_t *t = &table[i];
        if (t->needle == NULL || t->warns) {
            par_manifest_t *m = accepted(t->yaml);
            if (t->warns &&
                (m->warnings.count != 1 || strcmp(m->warnings.items[0], t->needle) != 0))
                fail_msg("case %zu: expected the warning '%s'", i, t->needle);
            if (!t->warns)
                assert_int_equal(m->runtime_kind, PAR_RUNTIME_OTHER);
            par_manifest_free(m);
        } else {
            refused(t->yaml, t->needle);
        }
    }
}

/* The red-team input that crashed libfyaml 0.7.12, and its neighbours. */
static void test_parser_crash_inputs(void **state)
{
    refused("? p ] x:\t|", "agent.yaml: line 1, column ");
    refused("? p ] x:\t|\n", "agent.yaml: line 1, column ");
    refused("name: a\n? p ] x:\t|\n" MD, "agent.yaml: line 2, column ");
    refused("? p ] x:\t|" MD, "agent.yaml: line ");
}

static void test_calls(void **state)
{
    par_manifest_t *m = accepted("name: a\n" MD);
    assert_null(m->calls); /* not declared: no restriction */
    par_manifest_free(m);
    m = accepted("name: a\nmetadata:\n  version: 1.0.0\n  par:\n    calls: []\n");
    assert_non_null(m->calls);
    assert_null(m->calls[0]); /* declared empty: calls nothing */
    par_manifest_free(m);
    m = accepted("name: a\nmetadata:\n  version: 1.0.0\n  par:\n    calls:\n    abi: ~\n");
    assert_non_null(m->calls);
    assert_null(m->calls[0]);         /* `calls:` alone: calls nothing (fails closed) */
    assert_int_equal(m->par_abi, -1); /* other nulls are absent */
    par_manifest_free(m);
    m = accepted("name: a\nmetadata:\n  version: 1.0.0\n  par:\n"
                 "    calls: [\"shop-*\", \"echo@1.0.0/upper\", \"[a-c]?x\", \"!x\"]\n");
    assert_string_equal(m->calls[0], "shop-*");
    assert_string_equal(m->calls[1], "echo@1.0.0/upper");
    assert_string_equal(m->calls[2], "[a-c]?x");
    assert_string_equal(m->calls[3], "!x");
    assert_null(m->calls[4]);
    par_manifest_free(m);
}

static void test_skills_and_input_schema(void **state)
{
    (void)state;
    par_manifest_t *m = accepted("name: a\n" MD);
    assert_null(m->skills_json);
    assert_null(m->input_schema_json);
    par_manifest_free(m);
    m = accepted("name: a\nmetadata:\n  version: 1.0.0\n  par:\n    skills:\n"
                 "      - id: summarize\n        name: Summarize\n        description: Shortens\n"
                 "        tags: [text]\n        examples: [\"summarize this\"]\n"
                 "    input_schema:\n      type: object\n      properties: {doc: {type: string}}\n"
                 "      required: [doc]\n      additionalProperties: false\n");
    assert_string_equal(m->skills_json,
                        "[{\"id\":\"summarize\",\"name\":\"Summarize\",\"description\":"
                        "\"Shortens\",\"tags\":[\"text\"],\"examples\":[\"summarize this\"]}]");
    assert_string_equal(m->input_schema_json,
                        "{\"type\":\"object\",\"properties\":{\"doc\":{\"type\":\"string\"}},"
                        "\"required\":[\"doc\"],\"additionalProperties\":false}");
    par_manifest_free(m);
}

/* Each sub-agent and export describes itself; metadata.par's description is
 * the main export's, and nobody inherits another's. */
static void test_skills_per_agent(void **state)
{
    (void)state;
    par_manifest_t *m =
        accepted("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
                 "    - name: shout\n      public: true\n"
                 "      skills: [{id: loud, name: Loud, description: Shouts}]\n"
                 "      input_schema: {properties: {words: {type: string}}, required: [words]}\n"
                 "    - {name: quiet}\n"
                 "  par:\n    skills: [{id: main, name: Main, description: The main one}]\n"
                 "    exports: [{name: ex, entrypoint: 'm:g', input_schema: {type: object}}]\n");
    assert_int_equal(m->export_count, 4);
    assert_string_equal(m->exports[0].skills_json,
                        "[{\"id\":\"main\",\"name\":\"Main\",\"description\":\"The main one\"}]");
    assert_null(m->exports[0].input_schema_json);
    assert_string_equal(m->exports[1].name, "shout");
    assert_string_equal(m->exports[1].skills_json,
                        "[{\"id\":\"loud\",\"name\":\"Loud\",\"description\":\"Shouts\"}]");
    assert_string_equal(
        m->exports[1].input_schema_json,
        "{\"properties\":{\"words\":{\"type\":\"string\"}},\"required\":[\"words\"]}");
    assert_null(m->exports[2].skills_json);
    assert_null(m->exports[2].input_schema_json);
    assert_null(m->exports[3].skills_json);
    assert_string_equal(m->exports[3].input_schema_json, "{\"type\":\"object\"}");
    par_manifest_free(m);

    /* the same rules, at the entry's own path; unknown keys stay errors */
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: s, skills: [{id: x, name: X}]}\n",
            "agent.yaml: metadata.sub_agents[0].skills[0]: description is required");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: s, skills: []}\n",
            "agent.yaml: metadata.sub_agents[0].skills: must be a non-empty list");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: s, input_schema: {type: array}}\n",
            "agent.yaml: metadata.sub_agents[0].input_schema.type: must be object");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: s, input_schema: [x]}\n",
            "agent.yaml: metadata.sub_agents[0].input_schema: must be a JSON Schema object");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n  sub_agents:\n"
            "    - {name: s, skils: []}\n",
            "metadata.sub_agents[0].skils: unknown key `skils` (did you mean `skills`?)");
    refused("name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n"
            "  par: {exports: [{name: e, entrypoint: 'm:g', inputschema: {}}]}\n",
            "metadata.par.exports[0].inputschema: unknown key `inputschema` (did you mean "
            "`input_schema`?)");
}

/* pixell-kit's mcp.config_file: the packed file PAR reads for tool schemas. */
static void test_mcp_config_file(void **state)
{
    (void)state;
    par_manifest_t *m = accepted("name: a\nmcp: {enabled: true, config_file: conf/mcp.json}\n" MD);
    assert_string_equal(m->mcp_config_file, "conf/mcp.json");
    par_manifest_free(m);
    m = accepted("name: a\nmcp: {enabled: false, config_file: mcp.json}\n" MD);
    assert_null(m->mcp_config_file);
    par_manifest_free(m);
    m = accepted("name: a\nmcp: {enabled: true}\n" MD);
    assert_null(m->mcp_config_file);
    par_manifest_free(m);
    m = accepted("name: a\nmcp: on\n" MD);
    assert_null(m->mcp_config_file);
    par_manifest_free(m);
    refused("name: a\nmcp: {config_file: ../x.json}\n" MD,
            "agent.yaml: mcp.config_file: must be a path inside the package");
    refused("name: a\nmcp: {config_file: /etc/x.json}\n" MD,
            "agent.yaml: mcp.config_file: must be a path inside the package");
    refused("name: a\nmcp: {config_file: a/../../x}\n" MD,
            "agent.yaml: mcp.config_file: must be a path inside the package");
    refused("name: a\nmcp: {config_file: [x]}\n" MD, "agent.yaml: mcp.config_file: must be");
}

/* Applies one single-character edit to `w`: op 0 deletes position i, 1
 * replaces it with ch, 2 inserts ch before it. */
static int edit(const char *w, int op, size_t i, char ch, char *out, size_t n)
{
    size_t len = strlen(w);
    if ((op != 2 && i >= len) || i > len || len + 2 > n)
        return -1;
    size_t o = 0;
    for (size_t k = 0; k <= len; k++) {
        if (k == i && op == 2)
            out[o++] = ch;
        if (k == len)
            break;
        if (k == i && op == 0)
            continue;
        out[o++] = (k == i && op == 1) ? ch : w[k];
    }
    out[o] = '\0';
    return strcmp(out, w) == 0 ? -1 : 0;
}

/* Parses the manifest; returns 1 when it is accepted with `p` public. */
static int publishes_p(const char *y)
{
    par_manifest_t *m = NULL;
    if (par_manifest_parse(y, strlen(y), &m, NULL) != PAR_OK)
        return 0;
    const par_export_t *e = par_manifest_export(m, "p");
    int pub = e && e->is_public;
    par_manifest_free(m);
    return pub;
}

/* No single-character edit of `public` or of `sub_agents` (every printable
 * ASCII character deleted, replaced or inserted anywhere) makes a private
 * sub-agent public: the package is refused, or `p` stays private or absent. */
static void test_typos_never_publish(void **state)
{
    static const char *const words[] = {"public", "sub_agents", "false"};
    size_t cases = 0;
    for (size_t w = 0; w < 3; w++) {
        for (int op = 0; op < 3; op++) {
            for (size_t i = 0; i <= strlen(words[w]); i++) {
                for (int ch = op == 0 ? 'a' : 0x20; ch <= (op == 0 ? 'a' : 0x7e); ch++) {
                    char typo[32], y[400];
                    if (edit(words[w], op, i, (char)ch, typo, sizeof(typo)) != 0)
                        continue;
                    snprintf(y, sizeof(y),
                             "name: a\nentrypoint: m:f\nmetadata:\n  version: 1.0.0\n"
                             "  %s:\n    - name: p\n      %s: %s\n",
                             w == 1 ? typo : "sub_agents", w == 0 ? typo : "public",
                             w == 2 ? typo : "false");
                    cases++;
                    if (publishes_p(y))
                        fail_msg("this typo made the private sub-agent public:\n%s", y);
                }
            }
        }
    }
    assert_true(cases > 1500);
    /* the same in flow style */
    assert_false(publishes_p("name: a\nentrypoint: m:f\nmetadata: {version: 1.0.0, sub_agents: "
                             "[{name: p, pubic: false}]}\n"));
    assert_false(publishes_p("name: a\nentrypoint: m:f\nmetadata: {version: 1.0.0, sub_agents: "
                             "[{name: p, public: 0}]}\n"));
}

/* ---- helpers ----------------------------------------------------------------------------- */

static void test_valid_name(void **state)
{
    assert_true(par_manifest_valid_name("a", 1));
    assert_true(par_manifest_valid_name("my-agent-2", 10));
    assert_true(par_manifest_valid_name("a-", 2));
    assert_true(par_manifest_valid_name("a--b", 4));
    assert_true(par_manifest_valid_name("abc", 2)); /* only len bytes count */
    assert_false(par_manifest_valid_name("", 0));
    assert_false(par_manifest_valid_name(NULL, 0));
    assert_false(par_manifest_valid_name("-a", 2));
    assert_false(par_manifest_valid_name("1a", 2));
    assert_false(par_manifest_valid_name("a_b", 3));
    assert_false(par_manifest_valid_name("aB", 2));
    assert_false(par_manifest_valid_name("a b", 3));
    assert_false(par_manifest_valid_name("a\0b", 3));
    assert_false(par_manifest_valid_name("é", strlen("é")));
    char n[70];
    memset(n, 'a', sizeof(n));
    assert_true(par_manifest_valid_name(n, 64));
    assert_false(par_manifest_valid_name(n, 65));
}

static void test_valid_semver(void **state)
{
    static const char *const good[] = {"0.0.0",
                                       "1.2.3",
                                       "10.20.30",
                                       "1.0.0-alpha",
                                       "1.0.0-alpha.1",
                                       "1.0.0-0.3.7",
                                       "1.0.0-x.7.z.92",
                                       "1.0.0-x-y-z.--",
                                       "1.0.0-0A.is.legal",
                                       "1.0.0+20130313144700",
                                       "1.0.0+001",
                                       "1.0.0-beta+exp.sha.5114f85",
                                       "1.0.0-rc.1+build.1",
                                       "99999999999999999999.0.0"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        if (!par_manifest_valid_semver(good[i], strlen(good[i])))
            fail_msg("rejected %s", good[i]);
    static const char *const bad[] = {
        "",         "1",         "1.2",       "1.2.3.4",    "01.2.3",     "1.02.3", "1.2.03",
        "1.2.3-01", "1.2.3-",    "1.2.3+",    "v1.2.3",     "1.2.3-a..b", " 1.2.3", "1.2.3 ",
        "1.2.3-a+", "1.2.3+a+b", "1.2.3-a_b", "1.2.3+a..b", "-1.2.3",     "1.-2.3", "1.2.3x",
        "a.b.c",    "1..3",      "1.2.",      ".1.2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (par_manifest_valid_semver(bad[i], strlen(bad[i])))
            fail_msg("accepted '%s'", bad[i]);
    assert_false(par_manifest_valid_semver(NULL, 0));
    assert_true(par_manifest_valid_semver("1.2.3-rc", 5)); /* only len bytes count */
    assert_false(par_manifest_valid_semver("1.2.3\0", 6));
}

static int setup(void **state)
{
    par_buf_init(&errs, 0);
    return 0;
}

static int teardown(void **state)
{
    par_buf_free(&errs);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_manifest),
        cmocka_unit_test(test_pixell_kit_manifest),
        cmocka_unit_test(test_pixell_kit_all_fields),
        cmocka_unit_test(test_native_with_par_block),
        cmocka_unit_test(test_export_order_and_inheritance),
        cmocka_unit_test(test_runtime_kinds),
        cmocka_unit_test(test_name_rules),
        cmocka_unit_test(test_metadata_version_rules),
        cmocka_unit_test(test_entrypoint_forms),
        cmocka_unit_test(test_sub_agent_rules),
        cmocka_unit_test(test_par_block_rules),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_null_means_absent),
        cmocka_unit_test(test_many_errors_at_once),
        cmocka_unit_test(test_error_report_is_capped),
        cmocka_unit_test(test_unknown_keys_warn),
        cmocka_unit_test(test_yaml_syntax_errors),
        cmocka_unit_test(test_document_shape),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_result_outlives_input),
        cmocka_unit_test(test_null_error_buffer),
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_valid_name),
        cmocka_unit_test(test_valid_semver),
        cmocka_unit_test(test_mistakes),
        cmocka_unit_test(test_parser_crash_inputs),
        cmocka_unit_test(test_calls),
        cmocka_unit_test(test_skills_and_input_schema),
        cmocka_unit_test(test_skills_per_agent),
        cmocka_unit_test(test_mcp_config_file),
        cmocka_unit_test(test_typos_never_publish),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
