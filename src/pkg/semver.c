/*
 * pkg/semver.c — semver 2.0.0 versions and node-semver ranges (see semver.h).
 *
 * A range is split on "||" into alternatives; each alternative into
 * white-space separated tokens (an operator standing alone, as in ">= 1.2",
 * is joined to the next token). Every token is desugared into at most two
 * primitive comparators (op, full version), node-semver's rules:
 *
 *   1.2.3   =1.2.3          1.2, =1.2   >=1.2.0 <1.3.0-0      1, 1.x  >=1.0.0 <2.0.0-0
 *   *, x    any             >1.2        >=1.3.0                <1.2    <1.2.0-0
 *   <=1.2   <1.3.0-0        >=1.2       >=1.2.0                >*, <*  nothing
 *   ~1.2.3  >=1.2.3 <1.3.0-0            ~1.2    >=1.2.0 <1.3.0-0       ~1  >=1.0.0 <2.0.0-0
 *   ^1.2.3  >=1.2.3 <2.0.0-0            ^0.2.3  >=0.2.3 <0.3.0-0
 *   ^0.0.3  >=0.0.3 <0.0.4-0            ^0.0    >=0.0.0 <0.1.0-0
 *   A - B   >=A <=B, where a partial B is exclusive of its next step:
 *           1.2.3 - 2.3  >=1.2.3 <2.4.0-0
 *
 * The "-0" on upper bounds keeps the pre-releases of the excluded version out
 * (2.0.0-rc.1 is below 2.0.0). Everything is parsed before anything is
 * matched, so a malformed alternative is reported even after a matching one.
 * Any thread; no state.
 */
#include "pkg/semver.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <par/par.h>

/* Primitive comparators per alternative (two per token at most). */
#define MAX_COMPARATORS 64

typedef enum op { OP_EQ, OP_LT, OP_LE, OP_GT, OP_GE } op_t;

typedef struct comparator {
    op_t op;
    par_semver_t v;
} comparator_t;

/* A possibly partial version: `known` leading numeric parts (0 to 3); the
 * others are wildcards or absent. A pre-release needs all three. */
typedef struct partial {
    int known;
    uint64_t num[3];
    char pre[PAR_SEMVER_PRE_MAX + 1];
    char build[PAR_SEMVER_PRE_MAX + 1];
} partial_t;

typedef struct span {
    const char *p;
    size_t n;
} span_t;

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int is_wild(char c)
{
    return c == 'x' || c == 'X' || c == '*';
}

/* ---- versions -------------------------------------------------------------------- */

/* Dot-separated non-empty [0-9A-Za-z-] identifiers; in a pre-release, an
 * all-digit identifier must not have a leading zero. NULL or the reason. */
static const char *check_idents(const char *s, size_t n, int prerelease)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (i == start)
                return prerelease ? "empty pre-release identifier" : "empty build identifier";
            int digits = 1;
            for (size_t k = start; k < i; k++)
                digits &= is_digit(s[k]);
            if (prerelease && digits && i - start > 1 && s[start] == '0')
                return "numeric pre-release identifier with a leading zero";
            start = i + 1;
        } else if (!(is_digit(s[i]) || (s[i] >= 'a' && s[i] <= 'z') ||
                     (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '-')) {
            return prerelease ? "pre-release identifiers hold only [0-9A-Za-z-]"
                              : "build identifiers hold only [0-9A-Za-z-]";
        }
    }
    return NULL;
}

/* Parses s[0..n) as a version that may be partial and hold wildcards; a
 * leading 'v' is skipped when allow_v. Returns NULL, or why it is not one. */
static const char *parse_partial(const char *s, size_t n, int allow_v, partial_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t i = 0;
    if (allow_v && i < n && s[i] == 'v')
        i++;
    int wild = 0;
    for (int part = 0; part < 3; part++) {
        if (i >= n)
            return part == 0 ? "no version" : NULL;
        if (is_wild(s[i])) {
            wild = 1;
            i++;
        } else if (is_digit(s[i])) {
            size_t b = i;
            uint64_t v = 0;
            while (i < n && is_digit(s[i])) {
                if (v > (PAR_SEMVER_NUM_MAX - (uint64_t)(s[i] - '0')) / 10)
                    return "number larger than 9007199254740991";
                v = v * 10 + (uint64_t)(s[i] - '0');
                i++;
            }
            if (i - b > 1 && s[b] == '0')
                return "number with a leading zero";
            if (wild)
                return "a number cannot follow a wildcard (write 1.x, not 1.x.3)";
            out->num[part] = v;
            out->known++;
        } else {
            return part == 0 ? "not a version" : "expected a number, x or * after '.'";
        }
        if (part < 2) {
            if (i >= n || s[i] != '.')
                break;
            i++;
            if (i >= n)
                return "ends with '.'";
        }
    }
    if (i >= n)
        return NULL;
    if (s[i] != '-' && s[i] != '+')
        return "unexpected character after the version";
    if (out->known < 3)
        return "a pre-release or build suffix needs a full MAJOR.MINOR.PATCH version";
    const char *plus = memchr(s + i, '+', n - i);
    size_t pre_end = plus ? (size_t)(plus - s) : n;
    if (s[i] == '-') {
        size_t len = pre_end - i - 1;
        const char *why = check_idents(s + i + 1, len, 1);
        if (why)
            return why;
        if (len > PAR_SEMVER_PRE_MAX)
            return "pre-release longer than 127 characters";
        memcpy(out->pre, s + i + 1, len);
    }
    if (plus) {
        size_t len = n - pre_end - 1;
        const char *why = check_idents(plus + 1, len, 0);
        if (why)
            return why;
        if (len > PAR_SEMVER_PRE_MAX)
            return "build metadata longer than 127 characters";
        memcpy(out->build, plus + 1, len);
    }
    return NULL;
}

int par_semver_parse(const char *s, par_semver_t *out)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return PAR_E_INVALID_ARGUMENT;
    partial_t p;
    size_t n = strlen(s);
    if (parse_partial(s, n, 0, &p) != NULL || p.known != 3)
        return PAR_E_INVALID_ARGUMENT;
    out->major = p.num[0];
    out->minor = p.num[1];
    out->patch = p.num[2];
    memcpy(out->pre, p.pre, sizeof(out->pre));
    memcpy(out->build, p.build, sizeof(out->build));
    return PAR_OK;
}

static int cmp_u64(uint64_t a, uint64_t b)
{
    return a < b ? -1 : a > b;
}

/* Pre-release precedence (semver 2.0.0 section 11): no pre-release ranks
 * above any; identifiers compare left to right, numeric ones numerically and
 * below alphanumeric ones, alphanumeric ones in ASCII order; a shorter list
 * ranks below a longer one it is a prefix of. */
static int cmp_pre(const char *a, const char *b)
{
    if (!*a || !*b)
        return (!*a && !*b) ? 0 : (!*a ? 1 : -1);
    for (;;) {
        size_t na = strcspn(a, "."), nb = strcspn(b, ".");
        int da = 1, db = 1;
        for (size_t i = 0; i < na; i++)
            da &= is_digit(a[i]);
        for (size_t i = 0; i < nb; i++)
            db &= is_digit(b[i]);
        int r;
        if (da && db) {
            /* no leading zeros: the longer number is the larger */
            r = na != nb ? (na < nb ? -1 : 1) : memcmp(a, b, na);
        } else if (da != db) {
            r = da ? -1 : 1;
        } else {
            r = memcmp(a, b, na < nb ? na : nb);
            if (r == 0)
                r = cmp_u64(na, nb);
        }
        if (r != 0)
            return r < 0 ? -1 : 1;
        a += na;
        b += nb;
        if (!*a || !*b)
            return (!*a && !*b) ? 0 : (!*a ? -1 : 1);
        a++;
        b++;
    }
}

int par_semver_cmp(const par_semver_t *a, const par_semver_t *b)
{
    int r = cmp_u64(a->major, b->major);
    if (r == 0)
        r = cmp_u64(a->minor, b->minor);
    if (r == 0)
        r = cmp_u64(a->patch, b->patch);
    if (r == 0)
        r = cmp_pre(a->pre, b->pre);
    return r;
}

/* ---- ranges ---------------------------------------------------------------------- */

typedef struct ctx {
    const char *range;
    par_buf_t *err;
    comparator_t *set;
    size_t n;
} ctx_t;

__attribute__((format(printf, 3, 4))) static int bad(ctx_t *c, span_t tok, const char *fmt, ...)
{
    if (c->err) {
        par_buf_appends(c->err, "range ");
        par_buf_append_json_str(c->err, c->range, strlen(c->range));
        if (tok.p) {
            par_buf_appends(c->err, ": ");
            par_buf_append_json_str(c->err, tok.p, tok.n);
        }
        par_buf_appends(c->err, ": ");
        va_list ap;
        va_start(ap, fmt);
        par_buf_vappendf(c->err, fmt, ap);
        va_end(ap);
        par_buf_appends(c->err, "\n");
    }
    return -PAR_E_INVALID_ARGUMENT;
}

static int add(ctx_t *c, span_t tok, op_t op, uint64_t major, uint64_t minor, uint64_t patch,
               const char *pre)
{
    if (c->n == MAX_COMPARATORS)
        return bad(c, tok,
                   "alternative too long: more than %d comparators once ~, ^, x-ranges "
                   "and hyphen ranges are expanded",
                   MAX_COMPARATORS);
    comparator_t *k = &c->set[c->n++];
    memset(k, 0, sizeof(*k));
    k->op = op;
    k->v.major = major;
    k->v.minor = minor;
    k->v.patch = patch;
    snprintf(k->v.pre, sizeof(k->v.pre), "%s", pre);
    return 0;
}

/* Matches nothing: node-semver's "<0.0.0-0". */
static int add_nothing(ctx_t *c, span_t tok)
{
    return add(c, tok, OP_LT, 0, 0, 0, "0");
}

/* The exclusive upper bound of a partial version: 1 -> <2.0.0-0, 1.2 -> <1.3.0-0. */
static int add_next_step(ctx_t *c, span_t tok, const partial_t *p)
{
    if (p->known == 1)
        return add(c, tok, OP_LT, p->num[0] + 1, 0, 0, "0");
    return add(c, tok, OP_LT, p->num[0], p->num[1] + 1, 0, "0");
}

typedef enum kind { K_PLAIN, K_EQ, K_LT, K_LE, K_GT, K_GE, K_TILDE, K_CARET } kind_t;

/* Desugars one comparator token (operator already split off). */
static int desugar(ctx_t *c, span_t tok, kind_t k, const partial_t *p)
{
    const uint64_t M = p->num[0], m = p->num[1], pa = p->num[2];
    int rc;
    switch (k) {
    case K_PLAIN:
    case K_EQ:
        if (p->known == 0)
            return 0;
        if (p->known == 3)
            return add(c, tok, OP_EQ, M, m, pa, p->pre);
        if ((rc = add(c, tok, OP_GE, M, p->known == 2 ? m : 0, 0, "")) != 0)
            return rc;
        return add_next_step(c, tok, p);
    case K_GT:
        if (p->known == 0)
            return add_nothing(c, tok);
        if (p->known == 1)
            return add(c, tok, OP_GE, M + 1, 0, 0, "");
        if (p->known == 2)
            return add(c, tok, OP_GE, M, m + 1, 0, "");
        return add(c, tok, OP_GT, M, m, pa, p->pre);
    case K_GE:
        if (p->known == 0)
            return 0;
        return add(c, tok, OP_GE, M, m, pa, p->pre);
    case K_LT:
        if (p->known == 0)
            return add_nothing(c, tok);
        return add(c, tok, OP_LT, M, m, pa, p->known == 3 ? p->pre : "0");
    case K_LE:
        if (p->known == 0)
            return 0;
        if (p->known == 3)
            return add(c, tok, OP_LE, M, m, pa, p->pre);
        return add_next_step(c, tok, p);
    case K_TILDE:
        if (p->known == 0)
            return 0;
        if ((rc = add(c, tok, OP_GE, M, m, pa, p->pre)) != 0)
            return rc;
        if (p->known == 1)
            return add(c, tok, OP_LT, M + 1, 0, 0, "0");
        return add(c, tok, OP_LT, M, m + 1, 0, "0");
    case K_CARET:
        if (p->known == 0)
            return 0;
        if ((rc = add(c, tok, OP_GE, M, m, pa, p->pre)) != 0)
            return rc;
        if (p->known == 1 || M > 0)
            return add(c, tok, OP_LT, M + 1, 0, 0, "0");
        if (p->known == 2 || m > 0)
            return add(c, tok, OP_LT, 0, m + 1, 0, "0");
        return add(c, tok, OP_LT, 0, 0, pa + 1, "0");
    }
    return 0;
}

/* Splits the operator off a token: returns its length (0 for none). */
static size_t op_prefix(span_t t, kind_t *k)
{
    static const struct {
        const char *s;
        kind_t k;
    } ops[] = {{">=", K_GE}, {"<=", K_LE}, {"~>", K_TILDE}, {">", K_GT},
               {"<", K_LT},  {"=", K_EQ},  {"~", K_TILDE},  {"^", K_CARET}};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        size_t n = strlen(ops[i].s);
        if (t.n >= n && memcmp(t.p, ops[i].s, n) == 0) {
            *k = ops[i].k;
            return n;
        }
    }
    *k = K_PLAIN;
    return 0;
}

static const char *const expected =
    "expected a version (1.2.3), a partial version or x-range (1.2, 1.x, *), a comparator "
    "(>=1.2.3, <2), ~1.2.3, ^1.2.3 or a hyphen range (1.2.3 - 2.3.4)";

/* Parses a token's version part, reporting a failure against the token. */
static int token_version(ctx_t *c, span_t tok, size_t skip, partial_t *p)
{
    const char *s = tok.p + skip;
    size_t n = tok.n - skip;
    while (n > 0 && is_space(*s)) {
        s++;
        n--;
    }
    if (n == 0)
        return bad(c, tok, "an operator without a version; %s", expected);
    const char *why = parse_partial(s, n, 1, p);
    /* the long hint only where the token is not recognisable at all */
    if (why && (strcmp(why, "not a version") == 0 ||
                strcmp(why, "unexpected character after the version") == 0))
        return bad(c, tok, "%s; %s", why, expected);
    if (why)
        return bad(c, tok, "%s", why);
    return 0;
}

/* One "||" alternative s[0..n): fills c->set. */
static int parse_alternative(ctx_t *c, const char *s, size_t n)
{
    enum { MAX_TOKENS = 2 * MAX_COMPARATORS };
    span_t tok[MAX_TOKENS];
    size_t nt = 0, i = 0;
    c->n = 0;
    while (i < n) {
        while (i < n && is_space(s[i]))
            i++;
        if (i == n)
            break;
        size_t b = i;
        while (i < n && !is_space(s[i]))
            i++;
        span_t t = {s + b, i - b};
        kind_t k;
        /* an operator standing alone takes the next token: ">= 1.2" */
        if (op_prefix(t, &k) == t.n) {
            while (i < n && is_space(s[i]))
                i++;
            while (i < n && !is_space(s[i]))
                i++;
            t.n = i - b;
        }
        if (nt == MAX_TOKENS)
            return bad(c, t, "more than %d tokens in one alternative", MAX_TOKENS);
        tok[nt++] = t;
    }
    if (nt == 0) {
        span_t none = {NULL, 0};
        return bad(c, none, "%s; write \"*\" for any version",
                   strspn(c->range, " \t\r\n\v\f") == strlen(c->range)
                       ? "empty range"
                       : "empty alternative (nothing between \"||\" and its neighbours)");
    }
    int rc;
    for (size_t t = 0; t < nt; t++) {
        if (tok[t].n == 1 && tok[t].p[0] == '-') {
            if (nt != 3 || t != 1)
                return bad(c, tok[t],
                           "a hyphen range is exactly \"VERSION - VERSION\" "
                           "(1.2.3 - 2.3.4), alone in its alternative");
            partial_t from, to;
            kind_t k;
            for (size_t e = 0; e < 3; e += 2)
                if (op_prefix(tok[e], &k) != 0)
                    return bad(c, tok[e],
                               "a hyphen range takes versions without operators "
                               "(1.2.3 - 2.3.4)");
            if ((rc = token_version(c, tok[0], 0, &from)) != 0 ||
                (rc = token_version(c, tok[2], 0, &to)) != 0)
                return rc;
            if (from.known > 0 &&
                (rc = add(c, tok[0], OP_GE, from.num[0], from.num[1], from.num[2], from.pre)) != 0)
                return rc;
            if (to.known == 3)
                return add(c, tok[2], OP_LE, to.num[0], to.num[1], to.num[2], to.pre);
            if (to.known > 0)
                return add_next_step(c, tok[2], &to);
            return 0;
        }
    }
    for (size_t t = 0; t < nt; t++) {
        kind_t k;
        size_t skip = op_prefix(tok[t], &k);
        partial_t p;
        if ((rc = token_version(c, tok[t], skip, &p)) != 0)
            return rc;
        if ((rc = desugar(c, tok[t], k, &p)) != 0)
            return rc;
    }
    return 0;
}

static int comparator_ok(const comparator_t *k, const par_semver_t *v)
{
    int r = par_semver_cmp(v, &k->v);
    switch (k->op) {
    case OP_EQ:
        return r == 0;
    case OP_LT:
        return r < 0;
    case OP_LE:
        return r <= 0;
    case OP_GT:
        return r > 0;
    case OP_GE:
        return r >= 0;
    }
    return 0;
}

/* node-semver's testSet: every comparator holds and, for a pre-release
 * version, some comparator names a pre-release of the same major.minor.patch. */
static int set_matches(const comparator_t *set, size_t n, const par_semver_t *v)
{
    for (size_t i = 0; i < n; i++)
        if (!comparator_ok(&set[i], v))
            return 0;
    if (!v->pre[0])
        return 1;
    for (size_t i = 0; i < n; i++) {
        const par_semver_t *a = &set[i].v;
        if (a->pre[0] && a->major == v->major && a->minor == v->minor && a->patch == v->patch)
            return 1;
    }
    return 0;
}

int par_semver_range_match(const char *range, const char *version, par_buf_t *err)
{
    ctx_t c = {.range = range ? range : "", .err = err};
    par_semver_t v;
    if (version == NULL || par_semver_parse(version, &v) != PAR_OK) {
        if (err) {
            par_buf_appends(err, "version ");
            par_buf_append_json_str(err, version ? version : "", version ? strlen(version) : 0);
            par_buf_appends(err, ": not a semver version (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], "
                                 "such as 1.4.0 or 2.0.0-rc.1)\n");
        }
        return -PAR_E_INVALID_ARGUMENT;
    }
    size_t len = strlen(c.range);
    if (len > PAR_SEMVER_RANGE_MAX) {
        par_buf_errf(err, "range: %zu characters, more than the %d accepted\n", len,
                     PAR_SEMVER_RANGE_MAX);
        return -PAR_E_INVALID_ARGUMENT;
    }
    c.set = malloc(MAX_COMPARATORS * sizeof(*c.set));
    if (c.set == NULL)
        return -PAR_E_NO_MEMORY;
    int matched = 0, rc = 0;
    const char *p = c.range, *end = c.range + len;
    for (;;) {
        const char *bar = strstr(p, "||");
        const char *alt_end = bar ? bar : end;
        if ((rc = parse_alternative(&c, p, (size_t)(alt_end - p))) != 0)
            break;
        if (!matched && set_matches(c.set, c.n, &v))
            matched = 1;
        if (bar == NULL)
            break;
        p = bar + 2;
    }
    free(c.set);
    return rc != 0 ? rc : matched;
}
