/* core/ckpt.h -- model weights on disk in the safetensors format.
 *
 * Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header
 * length N, N bytes of JSON mapping each tensor name to {"dtype", "shape", "data_offsets"}
 * (plus "__metadata__": string -> string), then the raw little-endian tensor bytes. One
 * tensor per model segment: "<layer>.weight" shaped (OUT, IN), "<layer>.bias" shaped (OUT).
 * Files are written atomically: a temporary file in the same folder, fsync, rename. */
#ifndef PSTRAIN_CORE_CKPT_H
#define PSTRAIN_CORE_CKPT_H

#include "err.h"
#include "model.h"

/* meta: nmeta (key, value) string pairs stored under "__metadata__" (may be NULL). */
int ckpt_save_model(const char *path, ml_model *m, const char *const (*meta)[2], int nmeta,
                    pst_err *err);

#endif
