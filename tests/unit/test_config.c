/* Unit tests for config/config.c, config/load.c, config/apply.c and
 * util/path.c: the table's integrity, each kind of mistake, units,
 * precedence, paths and the agreement with the auth module's bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <par/par.h>

#include "config/apply.h"
#include "config/config.h"
#include "util/path.h"
#include "runtime/runtime.h"

static int load(par_conf_t *c, const char *yaml, char **err_out)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    par_conf_init(c);
    int rc = par_conf_load_text(c, "/etc/par/par.yaml", yaml, strlen(yaml), &err);
    *err_out = strndup(err.data ? err.data : "", err.len);
    par_buf_free(&err);
    return rc;
}

static void test_table_is_consistent(void **state)
{
    (void)state;
    for (int i = 0; i < PAR_K_COUNT; i++) {
        const par_conf_key_t *a = &par_conf_keys[i];
        assert_non_null(a->help);
        assert_int_equal(par_conf_find(a->path), i);
        if (a->type == PAR_CT_INT)
            assert_true(a->min <= a->max);
        for (int j = i + 1; j < PAR_K_COUNT; j++) {
            const par_conf_key_t *b = &par_conf_keys[j];
            if (a->env && b->env && strcmp(a->env, b->env) == 0)
                fail_msg("%s and %s share %s", a->path, b->path, a->env);
            if (a->flag && b->flag && strcmp(a->flag, b->flag) == 0)
                fail_msg("%s and %s share %s", a->path, b->path, a->flag);
        }
    }
    par_conf_t c;
    par_conf_init(&c); /* aborts on a default its own key refuses */
    assert_int_equal(par_conf_int(&c, PAR_K_LIMITS_MAX_IN_FLIGHT), 1024);
    assert_int_equal(par_conf_int(&c, PAR_K_LIMITS_SCRATCH), 1024);
    assert_int_equal(par_conf_int(&c, PAR_K_LIMITS_CALL_DEPTH), 16);
    assert_false(par_conf_bool(&c, PAR_K_HTTP_HTTP2, 1));
    assert_false(par_conf_bool(&c, PAR_K_HTTP_REUSE_PORT, 1));
    /* the TLS paths need a restart; SIGHUP re-reads the files they name */
    assert_false(par_conf_keys[PAR_K_TLS_CERT].flags & PAR_CF_RELOAD);
    assert_false(par_conf_keys[PAR_K_TLS_KEY].flags & PAR_CF_RELOAD);
    assert_false(par_conf_keys[PAR_K_TLS_CLIENT_CA].flags & PAR_CF_RELOAD);
    assert_int_equal(par_conf_keys[PAR_K_LIMITS_CALL_DEPTH].min, 1);
    assert_int_equal(par_conf_keys[PAR_K_LIMITS_CALL_DEPTH].max, 256);
    assert_int_equal(par_conf_str(&c, PAR_K_STATE_DIR)[0], '/'); /* absolute at once */
    par_conf_free(&c);
}

static void test_mistakes(void **state)
{
    (void)state;
    static const struct {
        const char *yaml, *needle;
    } cases[] = {
        {"listn: x\n", "par.yaml:1: unknown key `listn` (did you mean `listen`?)"},
        {"limits: {timeout: 1}\n",
         "unknown key `limits.timeout` (did you mean `limits.timeout_ms`?)"},
        {"workers: {mni: 2}\n", "unknown key `workers.mni` (did you mean `workers.min`?)"},
        {"auth: {oidc: {isuer: x}}\n", "unknown key `auth.oidc.isuer` (did you mean"},
        {"registry: {s3: {zone: x}}\n", "unknown key `registry.s3.zone`"},
        {"queue: 3\n", "unknown key `queue` (did you mean `limits.queue`?)"},
        {"limits: {timeout_ms: ten}\n", "`limits.timeout_ms`: expected a duration from 1"},
        {"limits: {timeout_ms: 0}\n", "`limits.timeout_ms`: expected"},
        {"limits: {worker_cpu_seconds: 1500ms}\n", "`limits.worker_cpu_seconds`: expected"},
        {"limits: {max_input_kb: 3 bananas}\n", "`limits.max_input_kb`: expected a size"},
        {"limits: {max_call_depth: 0}\n",
         "`limits.max_call_depth`: expected a whole number from 1 to 256"},
        {"limits: {scratch_mb: -5}\n", "`limits.scratch_mb`: expected"},
        {"http: {threads: 99999999999999999999}\n", "`http.threads`: expected"},
        {"log: {level: LOUD}\n",
         "`log.level`: expected one of debug, info, warn, error, not `LOUD`"},
        {"auth: {mode: on}\n", "`auth.mode`: expected one of off, oidc, api_key"},
        {"http: {reuse_port: sometimes}\n", "`http.reuse_port`: expected true or false"},
        {"log: [a]\n", "`log`: expected a mapping"},
        {"tls: {cert: [a, b]}\n", "`tls.cert`: expected a string, not a list"},
        {"env: {allow: {a: b}}\n", "`env.allow`: expected a list of strings, not a mapping"},
        {"packages: ~\n", "`packages`: a value is required"},
        {"trust: {keys: [{key: a, file: b.pub}]}\n", "`trust.keys[0]`: needs exactly one of"},
        {"trust: {keys: {a: b}}\n", "`trust.keys`: expected a list of minisign keys"},
        {"trust: {keys: [[a, b]]}\n", "`trust.keys[0]`: expected a key, a .pub file or a mapping"},
        {"auth: {api_keys: [x]}\n", "`auth.api_keys[0]`: expected a mapping"},
        {"auth: {permissions: {grants: {admin: {a: b}}}}\n", "`auth.permissions.grants.admin`"},
        {"limits: {queue: 1, queue: 2}\n", "duplicate key"},
        {"[1, 2]\n", "must be a mapping of keys"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        par_conf_t c;
        char *err;
        if (load(&c, cases[i].yaml, &err) == PAR_OK)
            fail_msg("accepted: %s", cases[i].yaml);
        if (strstr(err, cases[i].needle) == NULL)
            fail_msg("for %s: '%s' does not mention '%s'", cases[i].yaml, err, cases[i].needle);
        free(err);
        par_conf_free(&c);
    }
}

static void test_units_paths_and_nulls(void **state)
{
    (void)state;
    par_conf_t c;
    char *err;
    int rc = load(&c,
                  "limits: {timeout_ms: 30s, memory_mb: 2GiB, max_input_kb: 1MiB,\n"
                  "         worker_cpu_seconds: 2m}\n"
                  "state_dir: ../lib/./par//\n"
                  "packages: pk\n"
                  "tls: {cert: /abs/c.pem, key: k.pem}\n"
                  "python: {interpreter: python3.11, wheelhouse: wh}\n"
                  "registry: {s3: {endpoint: null}}\n"
                  "trust: {keys: [RWQabc/def, {file: a.pub, packages: acme-*}]}\n",
                  &err);
    if (rc != PAR_OK)
        fail_msg("%s", err);
    free(err);
    assert_int_equal(par_conf_int(&c, PAR_K_LIMITS_TIMEOUT), 30000);
    assert_int_equal(par_conf_int(&c, PAR_K_LIMITS_MEMORY), 2048);
    assert_int_equal(par_conf_int(&c, PAR_K_LIMITS_MAX_INPUT), 1024);
    assert_int_equal(par_conf_int(&c, PAR_K_LIMITS_CPU), 120);
    assert_string_equal(par_conf_str(&c, PAR_K_STATE_DIR), "/etc/lib/par");
    assert_string_equal(par_conf_str(&c, PAR_K_PACKAGES), "/etc/par/pk");
    assert_string_equal(par_conf_str(&c, PAR_K_TLS_CERT), "/abs/c.pem");
    assert_string_equal(par_conf_str(&c, PAR_K_TLS_KEY), "/etc/par/k.pem");
    assert_string_equal(par_conf_str(&c, PAR_K_PYTHON), "python3.11"); /* looked up in PATH */
    assert_string_equal(par_conf_str(&c, PAR_K_WHEELHOUSE), "/etc/par/wh");
    assert_null(par_conf_str(&c, PAR_K_S3_ENDPOINT));
    assert_string_equal(c.v[PAR_K_LIMITS_TIMEOUT].origin, "/etc/par/par.yaml:1");
    par_conf_runtime_t r;
    assert_int_equal(par_conf_to_runtime(&c, &r), PAR_OK);
    assert_int_equal(r.cfg.trusted_key_count, 2);
    assert_string_equal(r.cfg.trusted_keys[0].key, "RWQabc/def"); /* a key, not a file */
    assert_string_equal(r.cfg.trusted_keys[1].key, "/etc/par/a.pub");
    assert_string_equal(r.cfg.trusted_keys[1].packages[0], "acme-*");
    assert_null(r.cfg.trusted_keys[1].packages[1]);
    assert_int_equal(r.cfg.max_input_bytes, 1024 * 1024);
    assert_false(r.cfg.allow_unsigned); /* a file: signatures required by default */
    par_conf_runtime_free(&r);
    par_conf_free(&c);
}

static void test_precedence(void **state)
{
    (void)state;
    char conf[] = "/tmp/par-test-config-XXXXXX";
    int fd = mkstemp(conf);
    assert_true(fd >= 0);
    const char *yaml = "listen: 127.0.0.1:1\nlog: {level: debug}\nlimits: {queue: 5}\n"
                       "trust: {keys: [RWQfile]}\n";
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    setenv("PAR_LISTEN", "127.0.0.1:2", 1);
    setenv("PAR_LOG_LEVEL", "error", 1);
    setenv("PAR_TRUSTED_KEYS", "RWQenv", 1);
    static char a0[] = "serve", a1[] = "--config", a3[] = "--log-level=warn", a4[] = "--trusted",
                a5[] = "a", a7[] = "b", a8[] = "--trusted-key", a9[] = "RWQflag";
    char *argv[] = {a0, a1, conf, a3, a4, a5, a4, a7, a8, a9, NULL};
    par_conf_t c;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_conf_build(&c, 10, argv, &err);
    unsetenv("PAR_LISTEN");
    unsetenv("PAR_LOG_LEVEL");
    unsetenv("PAR_TRUSTED_KEYS");
    unlink(conf);
    if (rc != PAR_OK)
        fail_msg("%.*s", (int)err.len, err.data);
    par_buf_free(&err);
    assert_string_equal(par_conf_str(&c, PAR_K_LISTEN), "127.0.0.1:2");
    assert_int_equal(c.v[PAR_K_LISTEN].src, PAR_CS_ENV);
    assert_string_equal(par_conf_str(&c, PAR_K_LOG_LEVEL), "warn");
    assert_int_equal(c.v[PAR_K_LOG_LEVEL].src, PAR_CS_FLAG);
    assert_int_equal(par_conf_int(&c, PAR_K_LIMITS_QUEUE), 5);
    assert_int_equal(c.v[PAR_K_LIMITS_QUEUE].src, PAR_CS_FILE);
    assert_int_equal(c.v[PAR_K_LIMITS_TIMEOUT].src, PAR_CS_DEFAULT);
    assert_int_equal(json_array_size(c.v[PAR_K_TRUSTED].v), 2);    /* repeated flags add */
    assert_int_equal(json_array_size(c.v[PAR_K_TRUST_KEYS].v), 3); /* keys add up */
    par_conf_t d;
    par_conf_init(&d);
    assert_false(par_conf_same(&c, &d, PAR_K_LISTEN));
    assert_true(par_conf_same(&c, &d, PAR_K_LIMITS_TIMEOUT));
    par_conf_free(&d);
    par_conf_free(&c);
}

/* The table's bounds for auth keys are the auth module's own. */
static void test_auth_bounds_agree(void **state)
{
    (void)state;
    for (int i = 0; i < PAR_K_COUNT; i++) {
        const par_conf_key_t *k = &par_conf_keys[i];
        if (strncmp(k->path, "auth.", 5) != 0 ||
            (k->type != PAR_CT_INT && k->type != PAR_CT_SEC && k->type != PAR_CT_MS))
            continue;
        par_auth_config_t a;
        par_buf_t e;
        par_buf_init(&e, 0);
        par_auth_config_init(&a);
        char v[32];
        snprintf(v, sizeof(v), "%lld", k->min);
        assert_int_equal(par_auth_config_set(&a, k->path + 5, v, &e), PAR_OK);
        snprintf(v, sizeof(v), "%lld", k->max);
        assert_int_equal(par_auth_config_set(&a, k->path + 5, v, &e), PAR_OK);
        snprintf(v, sizeof(v), "%lld", k->max + 1);
        assert_int_equal(par_auth_config_set(&a, k->path + 5, v, &e), PAR_E_INVALID_ARGUMENT);
        par_buf_free(&e);
        par_auth_config_free(&a);
    }
}

static void test_paths_and_suggestions(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"/a/b", "c", "/a/b/c"},      {"/a/b", "./c/", "/a/b/c"},    {"/a/b", "../c", "/a/c"},
        {"/a/b", "../../../c", "/c"}, {"/a", "/x/./y//z", "/x/y/z"}, {"/", ".", "/"},
        {"/a/b", "c/..", "/a/b"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char *p = par_path_absolute(cases[i][0], cases[i][1]);
        assert_string_equal(p, cases[i][2]);
        free(p);
    }
    char *d = par_path_dirname("/etc/par/par.yaml");
    assert_string_equal(d, "/etc/par");
    free(d);
    d = par_path_dirname("/par.yaml");
    assert_string_equal(d, "/");
    free(d);
    static const char *const known[] = {"listen", "packages", "state_dir", "timeout_ms"};
    assert_string_equal(par__conf_suggest("listn", known, 4), "listen");
    assert_string_equal(par__conf_suggest("pakcages", known, 4), "packages");
    assert_string_equal(par__conf_suggest("timeout", known, 4), "timeout_ms");
    assert_null(par__conf_suggest("zebra", known, 4));
}

/* An embedder's relative state directory is made absolute once: workers
 * change directory, and joining a relative cache path there found nothing. */
static void test_runtime_state_dir_is_absolute(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/par-test-rt-XXXXXX", cwd[4096];
    assert_non_null(mkdtemp(tmpl));
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(tmpl), 0);
    par_config_t cfg;
    par_config_init(&cfg);
    cfg.state_dir = "./rel/../var";
    cfg.allow_unsigned = 1;
    par_runtime_t *rt;
    assert_int_equal(par_runtime_new(&cfg, &rt), PAR_OK);
    char want[4200];
    snprintf(want, sizeof(want), "%s/var", tmpl);
    assert_string_equal(rt->state_dir, want);
    assert_string_equal(rt->cfg.state_dir, want);
    assert_true(strncmp(rt->cache_dir, want, strlen(want)) == 0);
    par_runtime_destroy(rt);
    assert_int_equal(chdir(cwd), 0);
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_is_consistent),
        cmocka_unit_test(test_mistakes),
        cmocka_unit_test(test_units_paths_and_nulls),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_auth_bounds_agree),
        cmocka_unit_test(test_paths_and_suggestions),
        cmocka_unit_test(test_runtime_state_dir_is_absolute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
