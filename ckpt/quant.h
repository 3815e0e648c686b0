/* ckpt/quant.h -- model compression on disk: fp16 and int8 exports of a model checkpoint,
 * and magnitude pruning.
 *
 * Exported files are model checkpoints (ckpt/ckpt.h: the same metadata, checksums, atomic
 * write) with "pstrain.quant" in "__metadata__" and narrower tensors:
 *   fp16  every model tensor F16 (IEEE binary16, base/half.h); preprocess.* stay F32
 *   int8  every 2-D tensor W (R, C) -- a dense layer's (OUT, IN) weight, an embedding's
 *         (V, D) table -- as I8 "<name>" (R, C) with F32 "<name>.scale" (R): per output
 *         unit (row) r, symmetric,
 *             scale_r = max_c |W[r,c]| / 127,  Q[r,c] = clamp(round(W[r,c] / scale_r), -127, 127)
 *         so W[r,c] ~ Q[r,c] * scale_r within scale_r / 2 (a zero row: scale 0, Q 0);
 *         1-D tensors (biases, norms) and preprocess.* stay F32.
 * Every reader of model files (ckpt_load, ckpt_load_into, ckpt_init_from) widens them back
 * to F32 on load, so `pstrain eval`, `predict` and `model.init_from` take them as they are.
 *
 * Pruning sets, in every 2-D tensor, the floor(s * n) weights of smallest magnitude to
 * exactly 0 (per tensor, so each layer keeps its share; ties broken by position); biases,
 * norms and preprocess.* are untouched. Fine-tuning keeps those zeros (train.prune_mask,
 * docs/compression.md). */
#ifndef PSTRAIN_CKPT_QUANT_H
#define PSTRAIN_CKPT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Quantises W (rows, cols) row by row as above: q (rows, cols), scale (rows). A non-finite
 * value is PST_ERR_DATA naming its [row, col]; q and scale are then undefined. */
int ckpt_q8_rows(int8_t *q, float *scale, const float *w, int64_t rows, int64_t cols, pst_err *err);
/* w[r, c] = q[r, c] * scale[r]. */
void ckpt_q8_dequant(float *w, const int8_t *q, const float *scale, int64_t rows, int64_t cols);

typedef enum { CKPT_EXPORT_FP16 = 0, CKPT_EXPORT_INT8 } ckpt_export_kind;

typedef struct {
    int narrowed;    /* tensors written as F16 or I8 */
    int kept;        /* tensors left F32 */
    double max_err;  /* max |w - widened w| over every weight */
    uint64_t params; /* floats of the source file */
} ckpt_export_report;

/* Writes the model checkpoint at in as an exported file at out (atomically; nothing is
 * written on failure). in must be an fp32 pstrain model file (an exported one is
 * PST_ERR_ARG: export from the original); its non-finite weights are refused as every
 * reader refuses them, and fp16 refuses a weight beyond +-65504 (PST_ERR_DATA). */
int ckpt_export(const char *in, const char *out, ckpt_export_kind kind, ckpt_export_report *rep,
                pst_err *err);

typedef struct {
    uint64_t pruned; /* weights set to zero (including those that were zero already) */
    uint64_t total;  /* weights of the 2-D tensors */
    int tensors;     /* 2-D tensors pruned */
} ckpt_prune_report;

/* Magnitude pruning of the fp32 model checkpoint at in to sparsity s, 0 <= s < 1 (else
 * PST_ERR_ARG), written to out as an fp32 model file (atomically). */
int ckpt_prune_file(const char *in, const char *out, double s, ckpt_prune_report *rep,
                    pst_err *err);
/* The pruning of one tensor: zeroes the floor(s * n) entries of w[0..n) of smallest |w|. */
int ckpt_prune_tensor(float *w, size_t n, double s, pst_err *err);

#endif
