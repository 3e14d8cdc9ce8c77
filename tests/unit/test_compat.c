/*
 * Unit tests for pkg/compat.c: the checks deploy, `par pack` and `par inspect`
 * share, on package directories made here. Each problem is one line starting
 * with its field path; everything is reported at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <par/par.h>

#include "pkg/compat.h"
#include "util/fs.h"
#include "registry/cache.h"

static char root[64];
static par_buf_t errs;

static void put(const char *rel, const void *data, size_t n)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    char dir[300];
    snprintf(dir, sizeof(dir), "mkdir -p '%s'", p);
    assert_int_equal(system(dir), 0);
    *slash = '/';
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fwrite(data, 1, n, f);
    fclose(f);
}

static void puts_(const char *rel, const char *text)
{
    put(rel, text, strlen(text));
}

/* Parses `yaml`, runs the checks on `root`, returns the problem count. */
static int check(const char *yaml)
{
    par_manifest_t *m = NULL;
    par_buf_t e;
    par_buf_init(&e, 0);
    if (par_manifest_parse(yaml, strlen(yaml), &m, &e) != PAR_OK)
        fail_msg("manifest refused:\n%s\n%.*s", yaml, (int)e.len, e.data);
    par_buf_free(&e);
    par_buf_reset(&errs);
    int n = par_pkg_compat_check(root, m, &errs);
    par_buf_terminate(&errs);
    par_manifest_free(m);
    return n;
}

static void has(const char *needle)
{
    if (strstr(errs.data ? errs.data : "", needle) == NULL)
        fail_msg("problems lack '%s':\n%s", needle, errs.data ? errs.data : "");
}

static int setup(void **state)
{
    snprintf(root, sizeof(root), "/tmp/par-compat-XXXXXX");
    if (mkdtemp(root) == NULL)
        return -1;
    par_buf_init(&errs, 0);
    return 0;
}

static int teardown(void **state)
{
    par_fs_remove(root, NULL);
    par_buf_free(&errs);
    return 0;
}

#define NATIVE "name: a\nruntime: native\nmetadata:\n  version: 1.0.0\n"

static void test_native(void **state)
{
    /* an ELF header of this machine's kind, as the shared objects here have */
    FILE *self = fopen("/proc/self/exe", "rb");
    unsigned char elf[64];
    assert_int_equal(fread(elf, 1, sizeof(elf), self), sizeof(elf));
    fclose(self);
    elf[16] = 3, elf[17] = 0; /* ET_DYN */
    put("lib/libok.so", elf, sizeof(elf));
    puts_("lib/libtext.so", "#!/bin/sh\n");
    unsigned char arm[64];
    memcpy(arm, elf, sizeof(arm));
    arm[18] = 183, arm[19] = 0; /* EM_AARCH64 */
    put("lib/libarm.so", arm, sizeof(arm));
    assert_int_equal(check("name: a\nruntime: native\nentrypoint: lib/libok.so:f\n"
                           "metadata:\n  version: 1.0.0\n  sub_agents:\n"
                           "    - {name: s, entrypoint: 'lib/libok.so:g'}\n"),
                     0);
    assert_int_equal(errs.len, 0);
    /* every problem at once, each with its field path */
    assert_int_equal(check("name: a\nruntime: native\nentrypoint: lib/libnone.so:f\n"
                           "metadata:\n  version: 1.0.0\n  sub_agents:\n"
                           "    - {name: s, entrypoint: 'lib/libtext.so:g'}\n"
                           "  par:\n    abi: 99\n    requires: '>=99.0.0'\n    exports:\n"
                           "      - {name: e, entrypoint: 'lib/libarm.so:h'}\n"),
                     5);
    has("entrypoint: lib/libnone.so: not found in the package\n");
    has("metadata.sub_agents[0].entrypoint: lib/libtext.so: not an ELF shared object\n");
    has("metadata.par.exports[0].entrypoint: lib/libarm.so: built for aarch64 (64-bit)");
    has("metadata.par.abi: the package's abi is 99, this runtime speaks native ABI 1\n");
    has("metadata.par.requires: \">=99.0.0\" does not match this runtime");
    assert_int_equal(check(NATIVE), 1);
    has("entrypoint: the package exports no agent");
}

#define PY(entry) "name: a\nentrypoint: " entry "\nmetadata:\n  version: 1.0.0\n"

static void test_python(void **state)
{
    put("src/__init__.py", "", 0);
    puts_("src/main.py", "def handler(i):\n    return i\n");
    put("pkg/mod/__init__.py", "", 0);
    assert_int_equal(check(PY("src.main:handler")), 0);
    assert_int_equal(check(PY("pkg.mod:handler")), 0); /* a package's __init__.py */
    assert_int_equal(check(PY("src.other:handler")), 1);
    has("entrypoint: the package has no module src.other (src/other.py or "
        "src/other/__init__.py)\n");
    /* a module from outside the package needs a requirement to come from */
    assert_int_equal(check(PY("requests.api:handler")), 1);
    puts_("requirements.txt", "# deps\n\nrequests>=2\n");
    assert_int_equal(check(PY("requests.api:handler")), 0);
    puts_("requirements.txt", "requests>=2\n--index-url http://x/\nevil @ http://x/e.whl\n");
    assert_int_equal(check(PY("src.main:handler")), 2);
    has("requirements.txt:2: pip options are not allowed");
    has("requirements.txt:3: direct references, URLs and paths are not allowed");
    char reqs[128];
    snprintf(reqs, sizeof(reqs), "%s/requirements.txt", root);
    unlink(reqs);
    /* a runtime without a loader, with a suggestion when one is close */
    assert_int_equal(check("name: a\nruntime: pyhton3.11\nentrypoint: src.main:handler\n"
                           "metadata:\n  version: 1.0.0\n"),
                     1);
    has("runtime: no loader for runtime pyhton3.11 (did you mean python3.11?)");
    assert_int_equal(check("name: a\nruntime: node18\nentrypoint: a:b\nmetadata:\n"
                           "  version: 1.0.0\n"),
                     1);
    has("runtime: no loader for runtime node18 (PAR runs");
    /* environment names the sandbox refuses */
    assert_int_equal(check("name: a\nentrypoint: src.main:handler\nenvironment: {LD_PRELOAD: x}\n"
                           "metadata:\n  version: 1.0.0\n"),
                     1);
    has("environment LD_PRELOAD: not allowed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_native, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
