/*
 * fuzz/fuzz_http.c — libFuzzer harness for the checks every HTTP request
 * passes before routing (http/check.c): HTTP/1 framing over the request head
 * as the client sent it, and the ids taken from paths.
 *
 * Input: one selector byte, then the bytes. Framing is compared with a
 * reference written here from RFC 9112 6.3's rule: a head with Content-Length
 * values that differ, or with Content-Length and Transfer-Encoding, is
 * refused; nothing else is. Path ids: a refusal always says why, and a path
 * whose id span is plain lowercase and short is never refused.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "fuzz_check.h"
#include "http/check.h"
#include "core/id.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Header `name` (lowercase) at the start of a line of `n` bytes, followed by ':'. */
static int header_is(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    if (n <= k || line[k] != ':')
        return 0;
    for (size_t i = 0; i < k; i++)
        if (tolower((unsigned char)line[i]) != name[i])
            return 0;
    return 1;
}

/* The reference: walks the head line by line with indexes. */
static int reference_refuses(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] != '\n') /* the request line */
        i++;
    const char *cl = NULL;
    size_t cl_len = 0;
    int te = 0;
    for (i++; i < n;) {
        size_t j = i;
        while (j < n && p[j] != '\n')
            j++;
        if (j == n) /* a line that is not finished is not a header yet */
            break;
        size_t len = j - i;
        if (len > 0 && p[i + len - 1] == '\r')
            len--;
        if (len == 0)
            break;
        if (header_is(p + i, len, "transfer-encoding")) {
            te = 1;
        } else if (header_is(p + i, len, "content-length")) {
            size_t a = i + 15, b = i + len;
            while (a < b && (p[a] == ' ' || p[a] == '\t'))
                a++;
            while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t'))
                b--;
            if (cl && (cl_len != b - a || memcmp(cl, p + a, b - a) != 0))
                return 1;
            cl = p + a, cl_len = b - a;
        }
        i = j + 1;
    }
    return cl && te;
}

static void check_framing(const char *p, size_t n)
{
    char msg[256] = "";
    int rc = par__http_check_head(p, n, msg, sizeof(msg));
    FUZZ_CHECK(rc == 0 || rc == -1, "check_head returned %d", rc);
    FUZZ_CHECK((rc == -1) == reference_refuses(p, n), "check_head %d, the reference disagrees", rc);
    FUZZ_CHECK(rc == 0 || msg[0] != '\0', "a refusal without a reason");
}

static void check_path(const char *p, size_t n)
{
    char msg[256] = "";
    int rc = par__http_check_path_ids(h2o_iovec_init(p, n), msg, sizeof(msg));
    FUZZ_CHECK(rc == 0 || (rc == -1 && msg[0] != '\0'), "path check %d without a reason", rc);
    /* /agents/<plain>/invoke with a short lowercase id always passes */
    static const char pre[] = "/agents/";
    if (n > sizeof(pre) - 1 && n - (sizeof(pre) - 1) <= 64 &&
        memcmp(p, pre, sizeof(pre) - 1) == 0) {
        int plain = 1;
        for (size_t i = sizeof(pre) - 1; i < n && plain; i++)
            plain = (p[i] >= 'a' && p[i] <= 'z') || p[i] == '-' || p[i] == '/';
        FUZZ_CHECK(!plain || rc == 0, "a plain id refused: %s", msg);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] & 1)
        check_path(p, n);
    else
        check_framing(p, n);
    return 0;
}
