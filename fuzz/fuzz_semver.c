/*
 * fuzz/fuzz_semver.c — libFuzzer harness for pkg/semver.c: versions come from
 * package manifests and ranges from `metadata.par.requires`, both written by
 * package authors.
 *
 * Input: "VERSION_A\nVERSION_B\nRANGE" (missing parts are empty). Checks:
 * a parsed version prints back to itself; comparison is reflexive,
 * antisymmetric and ignores build metadata; a range's validity does not depend
 * on the version it is matched against; "=V", ">=V", "<=V" match V and ">V",
 * "<V" do not; "R || R" answers as R does; an invalid range always says why.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "par/par.h"
#include "pkg/semver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sign(int x)
{
    return (x > 0) - (x < 0);
}

static void print(const par_semver_t *v, char *out, size_t cap, int with_build)
{
    int n = snprintf(out, cap, "%llu.%llu.%llu", (unsigned long long)v->major,
                     (unsigned long long)v->minor, (unsigned long long)v->patch);
    if (v->pre[0])
        n += snprintf(out + n, cap - (size_t)n, "-%s", v->pre);
    if (with_build && v->build[0])
        snprintf(out + n, cap - (size_t)n, "+%s", v->build);
}

static void check_version(const char *s, const par_semver_t *v)
{
    char text[512];
    par_semver_t w;
    print(v, text, sizeof(text), 1);
    FUZZ_CHECK(strcmp(text, s) == 0, "'%s' prints as '%s'", s, text);
    FUZZ_CHECK(par_semver_parse(text, &w) == PAR_OK, "'%s' does not parse again", text);
    FUZZ_CHECK(par_semver_cmp(v, &w) == 0, "'%s' differs from itself", text);
    print(v, text, sizeof(text), 0);
    FUZZ_CHECK(par_semver_parse(text, &w) == PAR_OK && par_semver_cmp(v, &w) == 0,
               "build metadata changes the order of '%s'", s);
    /* the comparators against the version itself */
    static const struct {
        const char *op;
        int want;
    } ops[] = {{"=", 1}, {">=", 1}, {"<=", 1}, {">", 0}, {"<", 0}, {"", 1}};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        char range[600];
        snprintf(range, sizeof(range), "%s%s", ops[i].op, s);
        int got = par_semver_range_match(range, s, NULL);
        FUZZ_CHECK(got == ops[i].want, "'%s' against '%s': %d", range, s, got);
    }
}

static int match(const char *range, const char *version)
{
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_semver_range_match(range, version, &err);
    FUZZ_CHECK(rc == 0 || rc == 1 || rc == -PAR_E_INVALID_ARGUMENT, "rc %d", rc);
    FUZZ_CHECK((rc < 0) == (err.len > 0), "rc %d with %zu bytes of error", rc, err.len);
    par_buf_free(&err);
    return rc;
}

static void check_range(const char *range, const char *a, int a_ok)
{
    int r = match(range, a);
    int r0 = match(range, "1.0.0");
    if (a_ok)
        FUZZ_CHECK((r < 0) == (r0 < 0), "'%s' valid for one version only", range);
    if (r >= 0 && strlen(range) * 2 + 4 <= PAR_SEMVER_RANGE_MAX) {
        par_buf_t twice;
        par_buf_init(&twice, 0);
        par_buf_appendf(&twice, "%s || %s", range, range);
        par_buf_terminate(&twice);
        int r2 = match(twice.data, a);
        FUZZ_CHECK(r2 == r || r2 < 0, "'%s' answers %d, '%s' %d", range, r, twice.data, r2);
        par_buf_free(&twice);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    char *a = s, *b = s + size, *range = s + size; /* both "" when absent */
    char *nl = strchr(a, '\n');
    if (nl) {
        *nl = '\0', b = nl + 1;
        if ((nl = strchr(b, '\n')) != NULL)
            *nl = '\0', range = nl + 1;
    }
    par_semver_t va, vb;
    int a_ok = par_semver_parse(a, &va) == PAR_OK;
    int b_ok = par_semver_parse(b, &vb) == PAR_OK;
    if (a_ok)
        check_version(a, &va);
    if (b_ok)
        check_version(b, &vb);
    if (a_ok && b_ok) {
        FUZZ_CHECK(sign(par_semver_cmp(&va, &vb)) == -sign(par_semver_cmp(&vb, &va)),
                   "'%s' and '%s' compare both ways alike", a, b);
        if (par_semver_cmp(&va, &vb) < 0) {
            char r[600];
            snprintf(r, sizeof(r), ">%s", a);
            /* a pre-release b may be excluded by the pre-release rule */
            int m = par_semver_range_match(r, b, NULL);
            FUZZ_CHECK(m == 1 || vb.pre[0], "'%s' does not match '%s'", b, r);
        }
    }
    check_range(range, a, a_ok);
    free(s);
    return 0;
}
