/*
 * The echo example package (native).
 *
 *   echo        public: returns its input unchanged
 *   echo/shout  public: upper-cases the "text" field by calling the private
 *               sub-agent `upper` through par_ctx_call
 *   echo/upper  private: upper-cases every string value of an object; only
 *               reachable from agents of this package
 */
#include <ctype.h>
#include <string.h>

#include <par/agent.h>

const unsigned par_agent_abi = PAR_AGENT_ABI;

int echo(par_agent_ctx_t *ctx, par_slice_t input, par_out_t *out);
int upper(par_agent_ctx_t *ctx, par_slice_t input, par_out_t *out);
int shout(par_agent_ctx_t *ctx, par_slice_t input, par_out_t *out);

int echo(par_agent_ctx_t *ctx, par_slice_t input, par_out_t *out)
{
    (void)ctx;
    return par_out_write(out, input.ptr, input.len);
}

/* Upper-cases string values (not object keys), leaving escapes intact. */
int upper(par_agent_ctx_t *ctx, par_slice_t input, par_out_t *out)
{
    char buf[4096];
    char stack[64]; /* enclosing containers, '{' or '[' */
    size_t n = 0, depth = 0;
    int in_str = 0, esc = 0, is_key = 0, expect_key = 0;
    par_ctx_usage(ctx, "characters", (int64_t)input.len);
    for (size_t i = 0; i < input.len; i++) {
        char c = input.ptr[i];
        if (in_str) {
            if (esc)
                esc = 0;
            else if (c == '\\')
                esc = 1;
            else if (c == '"')
                in_str = 0;
            else if (!is_key)
                c = (char)toupper((unsigned char)c);
        } else if (c == '"') {
            in_str = 1;
            is_key = expect_key;
            expect_key = 0;
        } else if (c == '{' || c == '[') {
            if (depth < sizeof(stack))
                stack[depth] = c;
            depth++;
            expect_key = c == '{';
        } else if (c == '}' || c == ']') {
            if (depth)
                depth--;
        } else if (c == ',') {
            expect_key = depth && depth <= sizeof(stack) && stack[depth - 1] == '{';
        }
        buf[n++] = c;
        if (n == sizeof(buf)) {
            if (par_out_write(out, buf, n) != 0)
                return 1;
            n = 0;
        }
    }
    return par_out_write(out, buf, n);
}

int shout(par_agent_ctx_t *ctx, par_slice_t input, par_out_t *out)
{
    par_slice_t result;
    int rc = par_ctx_call(ctx, "upper", input, &result);
    if (rc != 0) {
        par_ctx_fail(ctx, "the upper sub-agent failed");
        return rc;
    }
    return par_out_write(out, result.ptr, result.len);
}
