/*
 * util/suggest.c — see util/suggest.h.
 */
#include "util/suggest.h"

#include <ctype.h>
#include <string.h>

static size_t min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* Letters compare without case: `Name` is one step from nothing, not four. */
static int same(char x, char y)
{
    return tolower((unsigned char)x) == tolower((unsigned char)y);
}

size_t par_edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > PAR_SUGGEST_MAX_LEN || m > PAR_SUGGEST_MAX_LEN)
        return (size_t)-1;
    /* three rows of the dynamic-programming table: i-2, i-1, i */
    size_t rows[3][PAR_SUGGEST_MAX_LEN + 1];
    for (size_t j = 0; j <= m; j++)
        rows[1][j] = j;
    for (size_t i = 1; i <= n; i++) {
        size_t *cur = rows[(i + 1) % 3], *prev = rows[i % 3], *prev2 = rows[(i + 2) % 3];
        cur[0] = i;
        for (size_t j = 1; j <= m; j++) {
            size_t cost = same(a[i - 1], b[j - 1]) ? 0 : 1;
            cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
            if (i > 1 && j > 1 && same(a[i - 1], b[j - 2]) && same(a[i - 2], b[j - 1]) &&
                prev2[j - 2] + 1 < cur[j])
                cur[j] = prev2[j - 2] + 1;
        }
    }
    return rows[(n + 1) % 3][m];
}

const char *par_suggest(const char *word, const char *const *known)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    if (word == NULL)
        return NULL;
    for (; *known; known++) {
        if (strcmp(word, *known) == 0)
            return NULL;
        size_t d = par_edit_distance(word, *known);
        size_t allowed = strlen(*known) <= 4 ? 1 : 2;
        if (d <= allowed && d < best_d) {
            best = *known;
            best_d = d;
        }
    }
    return best;
}
