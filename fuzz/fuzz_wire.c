/* fuzz/fuzz_wire.c -- the message decoder: wire_unpack on a packed envelope, then
 * wire_check_frames against the frame sizes the header declares and against wrong ones.
 *
 * Input: the bytes of one envelope as a peer would send them (frame 1 of a message after
 * the routing id; see proto/msg.h). Beyond "no crash, no leak, no UB" it checks what a
 * receiver relies on: a refusal is PST_ERR_DATA with a one-line message; an accepted header
 * has bounded counts and NUL-terminated strings, packs again, and unpacks from that to the
 * same header (so validation does not depend on how the sender encoded it). */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz_common.h"
#include "proto/wire.h"

static void must(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_wire: invariant broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wire_header h;
    pst_err err = {0};
    int rc = wire_unpack(&h, data, size, &err);
    if (rc != PST_OK) {
        must(rc == PST_ERR_DATA, "a refusal is PST_ERR_DATA");
        fuzz_check_msg(err.msg);
        return 0;
    }
    must(h.version == WIRE_VERSION, "version checked");
    must(h.nframes >= 0 && h.nframes <= WIRE_MAX_FRAMES, "frame count bounded");
    must(h.num_servers >= 0 && h.num_servers <= WIRE_MAX_SERVERS, "server count bounded");
    must(h.ngroups >= 0 && h.ngroups <= WIRE_MAX_GROUPS, "group count bounded");
    must(h.nckpt >= 0 && h.nckpt <= WIRE_MAX_CKPTS, "checkpoint count bounded");
    must(memchr(h.role, '\0', sizeof h.role) != NULL, "role terminated");
    must(memchr(h.error_text, '\0', sizeof h.error_text) != NULL, "error text terminated");
    must(memchr(h.endpoint, '\0', sizeof h.endpoint) != NULL, "endpoint terminated");
    for (int i = 0; i < h.num_servers; i++)
        must(memchr(h.server_endpoints[i], '\0', WIRE_ENDPOINT_MAX) != NULL,
             "server endpoint terminated");
    /* Peer strings end up in log lines and error messages: one line each. */
    must(!strpbrk(h.role, "\r\n") && !strpbrk(h.endpoint, "\r\n") &&
             !strpbrk(h.error_text, "\r\n"),
         "no line breaks in peer strings");
    for (int i = 0; i < h.num_servers; i++)
        must(!strpbrk(h.server_endpoints[i], "\r\n"), "no line breaks in server endpoints");

    /* The frames the header declares pass; one frame more, or one byte off, does not. */
    size_t sizes[WIRE_MAX_FRAMES + 1] = {0};
    for (int i = 0; i < h.nframes; i++)
        sizes[i] = (size_t)h.frame_bytes[i];
    int exact_sizes = 1;
    for (int i = 0; i < h.nframes; i++)
        exact_sizes &= (uint64_t)sizes[i] == h.frame_bytes[i];
    if (exact_sizes)
        must(wire_check_frames(&h, h.nframes, sizes, &err) == PST_OK, "declared frames pass");
    must(wire_check_frames(&h, h.nframes + 1, sizes, &err) == PST_ERR_DATA, "extra frame refused");
    if (h.nframes > 0) {
        sizes[0] += 1;
        must(wire_check_frames(&h, h.nframes, sizes, &err) == PST_ERR_DATA,
             "wrong frame size refused");
    }

    /* Round trip: what was accepted packs, and unpacks to the same header. */
    static uint8_t buf[WIRE_MAX_META];
    size_t len = 0;
    wire_header h2;
    must(wire_pack(&h, buf, sizeof buf, &len, &err) == PST_OK, "accepted header packs");
    must(wire_unpack(&h2, buf, len, &err) == PST_OK, "repacked header unpacks");
    /* proto3 leaves out a scalar equal to 0, and -0.0 == 0: a -0.0 comes back as +0.0,
     * the same number. Compare those fields by value. */
    double *d1[3] = {&h.loss, &h.samples_per_s, &h.test_accuracy};
    double *d2[3] = {&h2.loss, &h2.samples_per_s, &h2.test_accuracy};
    for (int i = 0; i < 3; i++)
        if (*d1[i] == 0.0 && *d2[i] == 0.0)
            *d1[i] = *d2[i] = 0.0;
    if (memcmp(&h, &h2, sizeof h) != 0) {
        const unsigned char *a = (const void *)&h, *b = (const void *)&h2;
        size_t at = 0;
        while (a[at] == b[at])
            at++;
        fprintf(stderr, "fuzz_wire: %s: byte %zu of wire_header differs after a round trip\n",
                wire_type_name(h.type), at);
        abort();
    }
    return 0;
}
