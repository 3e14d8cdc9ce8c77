/*
 * core/proto.h — the worker protocol's frame encoding (docs/worker-protocol.md).
 *
 * A frame is a 24-byte little-endian header followed by `header_len` bytes of
 * JSON (may be 0) and `body_len` bytes of raw body:
 *
 *   offset size field
 *   0      1    type        (par_frame_type_t)
 *   1      1    version     (PAR_PROTO_VERSION)
 *   2      2    flags       (0; reserved)
 *   4      4    header_len
 *   8      4    body_len
 *   12     4    reserved    (0)
 *   16     8    id          request id (INVOKE/RESULT/ERROR/CANCEL/USAGE/LOG/
 *                           EVENT/EVENT_ACK), call id (CALL/CALL_RESULT/
 *                           CALL_EVENT), 0 for HELLO
 *
 * Used by the runtime's supervisor and by the par-worker host; pure functions,
 * any thread.
 */
#ifndef PAR_CORE_PROTO_H
#define PAR_CORE_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PAR_PROTO_VERSION 1
#define PAR_PROTO_HEADER_SIZE 24
#define PAR_PROTO_MAX_JSON_HEADER (1u << 20)
/* EVENT frames a worker may send for one request before it must wait for an
 * EVENT_ACK granting more: the flow-control window (runs). */
#define PAR_PROTO_EVENT_WINDOW 64

typedef enum par_frame_type {
    PAR_FRAME_HELLO = 1,
    PAR_FRAME_INVOKE = 2,
    PAR_FRAME_RESULT = 3,
    PAR_FRAME_ERROR = 4,
    PAR_FRAME_CALL = 5,
    PAR_FRAME_CALL_RESULT = 6,
    PAR_FRAME_LOG = 7,
    PAR_FRAME_USAGE = 8,
    PAR_FRAME_CHUNK = 9,
    PAR_FRAME_CANCEL = 10,
    PAR_FRAME_SANDBOX = 11, /* par-worker → runtime, before HELLO: the sandbox applied */
    /* runs (docs/worker-protocol.md "Events"): */
    PAR_FRAME_EVENT = 12, /* worker → runtime, request id: {"event":"type"}, body one JSON value */
    PAR_FRAME_EVENT_ACK = 13, /* runtime → worker, request id: {"n":k}, k more events may be sent */
    PAR_FRAME_CALL_EVENT = 14, /* runtime → worker, call id: an event of a streamed CALL */
    PAR_FRAME_TYPE_MAX = 14,
} par_frame_type_t;

typedef struct par_frame {
    uint8_t type;
    uint8_t version;
    uint16_t flags;
    uint32_t header_len;
    uint32_t body_len;
    uint64_t id;
    const char *header; /* points into the decoded buffer */
    const char *body;
} par_frame_t;

/* Writes a frame header into out[PAR_PROTO_HEADER_SIZE]. */
void par_proto_encode(uint8_t *out, uint8_t type, uint64_t id, uint32_t header_len,
                      uint32_t body_len);

/*
 * Decodes one frame from buf[0..len). Returns 1 and fills *f and *consumed when
 * a whole frame is present; 0 when more bytes are needed; -1 when the bytes are
 * not a valid frame (bad version or type, header over PAR_PROTO_MAX_JSON_HEADER,
 * body over max_body) with *err set to a static description.
 */
int par_proto_decode(const uint8_t *buf, size_t len, size_t max_body, par_frame_t *f,
                     size_t *consumed, const char **err);

const char *par_proto_type_name(int type);

/* The longest event type, and the type of an event that names none. */
#define PAR_PROTO_EVENT_TYPE_MAX 64
#define PAR_PROTO_EVENT_TYPE_DEFAULT "data"

/* The rules every event obeys (docs/worker-protocol.md "Events"), checked by
 * par-worker before it sends one, by the supervisor on every EVENT frame it
 * reads (a worker is never trusted) and by the in-process executor: `type`
 * is 1..PAR_PROTO_EVENT_TYPE_MAX characters of [A-Za-z0-9._:-] (the caller
 * maps a missing or empty type to "data" first); `data` is one JSON value of
 * 1..max_bytes bytes. Returns 0, or -1 with what was wrong in `why` (a
 * sentence, NUL-terminated, cut to why_cap). Pure; any thread. */
int par_proto_event_check(const char *type, size_t type_len, const char *data, size_t len,
                          size_t max_bytes, char *why, size_t why_cap);

#endif
