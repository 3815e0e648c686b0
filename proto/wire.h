/* proto/wire.h -- the wire format in plain C: packs and validates message metadata.
 *
 * The only module that includes the protoc-c generated header; everything else sees
 * wire_header. See pstrain.proto for the layout of a message. */
#ifndef PSTRAIN_PROTO_WIRE_H
#define PSTRAIN_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define WIRE_VERSION 1u
#define WIRE_MAX_FRAMES 64     /* raw frames after the envelope */
#define WIRE_MAX_META 65536    /* bytes of a packed envelope */

typedef enum { WIRE_MSG_ERROR = 1 } wire_type;

typedef struct {
    uint32_t version;
    wire_type type;
    uint64_t request_id;
    char role[16];
    int32_t rank;
    int nframes;                        /* raw frames that follow */
    uint64_t frame_bytes[WIRE_MAX_FRAMES];
    uint32_t error_code;                /* WIRE_MSG_ERROR */
    char error_text[256];
} wire_header;

/* Packs h into buf (cap bytes); returns the packed length in *len. */
int wire_pack(const wire_header *h, uint8_t *buf, size_t cap, size_t *len, pst_err *err);

/* Unpacks and validates: version, known type, role length, frame count within
 * WIRE_MAX_FRAMES, error fields present for WIRE_MSG_ERROR. Any failure is PST_ERR_DATA
 * with a message saying what was wrong; h is then unspecified. */
int wire_unpack(wire_header *h, const uint8_t *buf, size_t len, pst_err *err);

/* Checks that the raw frames that arrived match the header's declared lengths. */
int wire_check_frames(const wire_header *h, int nframes, const size_t *sizes, pst_err *err);

#endif
