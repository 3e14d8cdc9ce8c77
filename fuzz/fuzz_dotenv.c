/*
 * fuzz/fuzz_dotenv.c — libFuzzer harness for pkg/dotenv.c: a package's `.env`
 * file is written by its author and parsed at deploy and at every worker
 * start.
 *
 * Parses the input as `.env` text, then expands every value the way a worker's
 * environment is built. Checks: each entry is NAME=VALUE with a non-empty name
 * holding no '=', names are unique (a later line replaces an earlier one),
 * every value expands; and the input's first line, when it holds no quote or
 * line break, written as K='line' comes back unchanged through parse and
 * expansion (single quotes are literal: `${X}`, `$$`, `#`, `\` included).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "pkg/dotenv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_literal(const uint8_t *data, size_t size)
{
    size_t n = 0;
    while (n < size && n < 512 && data[n] != '\n')
        n++;
    if (memchr(data, '\'', n) || memchr(data, '\r', n) || memchr(data, '\0', n))
        return;
    char text[600];
    int tl = snprintf(text, sizeof(text), "K='%.*s'\n", (int)n, (const char *)data);
    par_envlist_t l;
    memset(&l, 0, sizeof(l));
    par_dotenv_parse(text, (size_t)tl, &l, NULL);
    FUZZ_CHECK(l.count == 1 && strncmp(l.items[0], "K=", 2) == 0, "%s: %zu entries", text, l.count);
    static const char *const none[] = {NULL};
    char *v = par_env_expand(l.items[0] + 2, none, "K", NULL);
    FUZZ_CHECK(v && strlen(v) == n && memcmp(v, data, n) == 0, "%s expands to '%s'", text,
               v ? v : "(null)");
    free(v);
    par_envlist_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_literal(data, size);
    if (size > 64 * 1024)
        return 0;
    char *text = malloc(size ? size : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    par_envlist_t l;
    memset(&l, 0, sizeof(l));
    par_buf_t warn;
    par_buf_init(&warn, 0);
    par_dotenv_parse(text, size, &l, &warn);
    static const char *const allow[] = {"PAR_FUZZ_ALLOWED", NULL};
    setenv("PAR_FUZZ_ALLOWED", "v", 0);
    for (size_t i = 0; i < l.count; i++) {
        const char *eq = strchr(l.items[i], '=');
        FUZZ_CHECK(eq != NULL && eq > l.items[i], "entry '%s'", l.items[i]);
        size_t nlen = (size_t)(eq - l.items[i]);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(strncmp(l.items[j], l.items[i], nlen + 1) != 0, "'%.*s' twice", (int)nlen,
                       l.items[i]);
        par_env_name_refused(l.items[i], nlen);
        char *v = par_env_expand(eq + 1, allow, l.items[i], &warn);
        FUZZ_CHECK(v != NULL, "expansion failed");
        free(v);
    }
    par_envlist_free(&l);
    par_buf_free(&warn);
    free(text);
    return 0;
}
