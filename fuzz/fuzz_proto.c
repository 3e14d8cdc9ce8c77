/*
 * fuzz/fuzz_proto.c — libFuzzer harness for the worker protocol decoder
 * (core/proto.c): the runtime decodes every byte a sandboxed worker writes,
 * so a hostile package controls all of this input.
 *
 * Decodes frame after frame from the input, as the supervisor's read loop does,
 * and checks: a whole frame lies inside the bytes given (header, JSON header,
 * body), its type and version are ones the decoder promises, one byte fewer
 * is "need more" (never a different frame), the header re-encodes to the same
 * bytes, and an error always says why. max_body comes from the input's first
 * byte, so small and large limits are both explored.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "core/proto.h"
#include "util/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_frame(const uint8_t *buf, size_t len, size_t max_body, const par_frame_t *f,
                        size_t consumed)
{
    FUZZ_CHECK(consumed >= PAR_PROTO_HEADER_SIZE && consumed <= len, "consumed %zu of %zu",
               consumed, len);
    FUZZ_CHECK(consumed == PAR_PROTO_HEADER_SIZE + (size_t)f->header_len + f->body_len,
               "consumed %zu, header %u, body %u", consumed, f->header_len, f->body_len);
    FUZZ_CHECK(f->type >= 1 && f->type <= PAR_FRAME_TYPE_MAX, "type %u", f->type);
    FUZZ_CHECK(f->version == PAR_PROTO_VERSION, "version %u", f->version);
    FUZZ_CHECK(f->header_len <= PAR_PROTO_MAX_JSON_HEADER, "header %u", f->header_len);
    FUZZ_CHECK(f->body_len <= max_body, "body %u over %zu", f->body_len, max_body);
    FUZZ_CHECK(f->header_len == 0 || f->header == (const char *)buf + PAR_PROTO_HEADER_SIZE,
               "header pointer");
    FUZZ_CHECK(f->body_len == 0 ||
                   f->body == (const char *)buf + PAR_PROTO_HEADER_SIZE + f->header_len,
               "body pointer");
    FUZZ_CHECK(par_proto_type_name(f->type) != NULL, "no name for type %u", f->type);
    if (buf[2] == 0 && buf[3] == 0 && memcmp(buf + 12, "\0\0\0\0", 4) == 0) {
        uint8_t again[PAR_PROTO_HEADER_SIZE];
        par_proto_encode(again, f->type, f->id, f->header_len, f->body_len);
        FUZZ_CHECK(memcmp(again, buf, PAR_PROTO_HEADER_SIZE) == 0, "re-encoding differs");
    }
    /* a frame cut short by one byte is incomplete, not another frame */
    par_frame_t g;
    size_t c2 = 0;
    const char *err = NULL;
    int rc = par_proto_decode(buf, consumed - 1, max_body, &g, &c2, &err);
    FUZZ_CHECK(rc == 0, "prefix of %zu bytes decodes to %d", consumed - 1, rc);
    if (f->header_len > 0) /* the supervisor scans JSON headers next */
        par_json_scan(f->header, f->header_len, NULL, 0, NULL);
    if (f->type == PAR_FRAME_EVENT) { /* the rules of events, on the raw header bytes as type */
        char why[256] = "";
        int bad = par_proto_event_check(f->header, f->header_len, f->body, f->body_len, max_body,
                                        why, sizeof(why));
        FUZZ_CHECK(bad == 0 || why[0] != '\0', "an event refused without a reason");
        FUZZ_CHECK(bad != 0 || (f->body_len > 0 && f->header_len > 0 &&
                                par_json_scan(f->body, f->body_len, NULL, 0, NULL) == 0),
                   "an event accepted that breaks the rules");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const size_t limits[] = {0, 16, 1024, 1u << 20, 64u << 20, SIZE_MAX};
    size_t max_body = limits[data[0] % (sizeof(limits) / sizeof(limits[0]))];
    const uint8_t *p = data + 1;
    size_t len = size - 1;
    while (len > 0) {
        par_frame_t f;
        size_t consumed = 0;
        const char *err = NULL;
        int rc = par_proto_decode(p, len, max_body, &f, &consumed, &err);
        FUZZ_CHECK(rc >= -1 && rc <= 1, "rc %d", rc);
        if (rc == -1) {
            FUZZ_CHECK(err != NULL && err[0] != '\0', "error without a reason");
            break;
        }
        if (rc == 0)
            break;
        check_frame(p, len, max_body, &f, consumed);
        p += consumed;
        len -= consumed;
    }
    return 0;
}
