/*
 * core/proto.c — see proto.h.
 */
#include "core/proto.h"

#include <stdio.h>
#include <string.h>

#include "util/json.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16),
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void par_proto_encode(uint8_t *out, uint8_t type, uint64_t id, uint32_t header_len,
                      uint32_t body_len)
{
    out[0] = type;
    out[1] = PAR_PROTO_VERSION;
    out[2] = out[3] = 0;
    put32(out + 4, header_len);
    put32(out + 8, body_len);
    put32(out + 12, 0);
    put32(out + 16, (uint32_t)id);
    put32(out + 20, (uint32_t)(id >> 32));
}

int par_proto_decode(const uint8_t *buf, size_t len, size_t max_body, par_frame_t *f,
                     size_t *consumed, const char **err)
{
    if (len < PAR_PROTO_HEADER_SIZE)
        return 0;
    f->type = buf[0];
    f->version = buf[1];
    f->flags = (uint16_t)(buf[2] | buf[3] << 8);
    f->header_len = get32(buf + 4);
    f->body_len = get32(buf + 8);
    f->id = (uint64_t)get32(buf + 16) | (uint64_t)get32(buf + 20) << 32;
    if (f->version != PAR_PROTO_VERSION) {
        *err = "unsupported protocol version";
        return -1;
    }
    if (f->type < PAR_FRAME_HELLO || f->type > PAR_FRAME_TYPE_MAX) {
        *err = "unknown frame type";
        return -1;
    }
    if (f->header_len > PAR_PROTO_MAX_JSON_HEADER) {
        *err = "frame JSON header too large";
        return -1;
    }
    if (f->body_len > max_body) {
        *err = "frame body too large";
        return -1;
    }
    size_t total = PAR_PROTO_HEADER_SIZE + (size_t)f->header_len + (size_t)f->body_len;
    if (len < total)
        return 0;
    f->header = (const char *)buf + PAR_PROTO_HEADER_SIZE;
    f->body = f->header + f->header_len;
    *consumed = total;
    return 1;
}

const char *par_proto_type_name(int type)
{
    static const char *const names[] = {
        "?",     "HELLO", "INVOKE", "RESULT",  "ERROR", "CALL",      "CALL_RESULT", "LOG",
        "USAGE", "CHUNK", "CANCEL", "SANDBOX", "EVENT", "EVENT_ACK", "CALL_EVENT"};
    _Static_assert(sizeof(names) / sizeof(*names) == PAR_FRAME_TYPE_MAX + 1, "a name per type");
    if (type < 1 || type > PAR_FRAME_TYPE_MAX)
        return "?";
    return names[type];
}

static int event_type_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == ':' || ch == '-';
}

int par_proto_event_check(const char *type, size_t type_len, const char *data, size_t len,
                          size_t max_bytes, char *why, size_t why_cap)
{
    if (type == NULL || type_len == 0 || type_len > PAR_PROTO_EVENT_TYPE_MAX) {
        snprintf(why, why_cap, "the event type is %zu characters long (1 to %d allowed)",
                 type ? type_len : 0, PAR_PROTO_EVENT_TYPE_MAX);
        return -1;
    }
    for (size_t i = 0; i < type_len; i++) {
        if (!event_type_char(type[i])) {
            snprintf(why, why_cap,
                     "the event type has a character outside [A-Za-z0-9._:-] at offset %zu", i);
            return -1;
        }
    }
    if (len > max_bytes) {
        snprintf(why, why_cap,
                 "the event '%.*s' is %zu bytes, over the cap of %zu bytes "
                 "(runs.max_event_kb)",
                 (int)type_len, type, len, max_bytes);
        return -1;
    }
    size_t off = 0;
    if (data == NULL || len == 0 || par_json_scan(data, len, NULL, 0, &off) != 0) {
        snprintf(why, why_cap,
                 "the data of the event '%.*s' is not one JSON value (byte %zu of %zu)",
                 (int)type_len, type, off, data ? len : 0);
        return -1;
    }
    return 0;
}
