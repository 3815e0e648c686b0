/* worker/compress.h -- a worker's gradients encoded for the wire (cluster.compression).
 *
 * The pushed vector is cut into the kv client's pieces (one PUSH each); this encodes a
 * whole gradient into per-piece frames held in one of two slots (the kv client alternates
 * pushes by clock parity, and a slot's frames travel zero-copy until ZeroMQ releases them
 * and every server acknowledged them).
 *   F16, BF16  each float halved (proto/wire_enc.h; F16 saturates at +-65504).
 *   TOPK       per piece of len floats, the k = max(1, ceil(ratio x len)) entries of the
 *              largest magnitude of a = g + r are sent (ties: the lowest indices; NaN counts
 *              as the largest, so the server's non-finite check still sees it), and r = a
 *              with the sent entries zeroed is kept for the next step: error feedback
 *              (Stich, Cordonnier, Jaggi 2018, "Sparsified SGD with memory"; Lin et al. 2018,
 *              "Deep Gradient Compression"). Over steps 1..T, sum of what was sent + r_T =
 *              sum of the gradients: nothing is lost, only delayed.
 * Not thread-safe; the caller (worker/kv.c) owns it. */
#ifndef PSTRAIN_WORKER_COMPRESS_H
#define PSTRAIN_WORKER_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "job/job.h"
#include "proto/wire.h"

/* cluster.compression as the wire's encoding of pushes (kv.h wk_kv_set_compression):
 * every worker, pstrain's and the library's, maps it here. */
wire_enc wk_comp_encoding(cfg_compression c);

typedef struct wk_comp wk_comp;

/* enc: F16, BF16 or TOPK (ratio in (0, 1], TOPK only); the pieces are [off[i], off[i] +
 * len[i]) of a vector of nparams floats, each len[i] <= WIRE_CHUNK_FLOATS (copied). */
wk_comp *wk_comp_create(wire_enc enc, double ratio, uint64_t nparams, const uint64_t *off,
                        const uint64_t *len, int npieces, pst_err *err);
void wk_comp_destroy(wk_comp *c);
wire_enc wk_comp_enc(const wk_comp *c);

/* Encodes gradient g (nparams floats; only the pieces are read) into slot 0 or 1, whose
 * earlier frames the caller must no longer need. TOPK: updates the residual. */
void wk_comp_encode(wk_comp *c, int slot, const float *g);
/* The same for piece i alone (so that piece i travels while i + 1 is encoded). */
void wk_comp_encode_piece(wk_comp *c, int slot, int i, const float *g);

/* The frames of piece i in slot (as wk_comp_encode left them): *nf (1 or 2) frames of
 * data[k], bytes[k], borrowed from c; *nnz: TOPK's entries (0 otherwise). */
void wk_comp_frames(const wk_comp *c, int slot, int i, const void **data, size_t *bytes, int *nf,
                    uint64_t *nnz);

/* TOPK: the residual r (nparams floats, 0 outside the pieces); NULL for the others. */
const float *wk_comp_residual(const wk_comp *c);

#endif
