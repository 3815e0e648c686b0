/* core/ckpt.h -- model checkpoints on disk in the safetensors format.
 *
 * Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header
 * length N, N bytes of JSON mapping each tensor name to {"dtype", "shape", "data_offsets"}
 * (plus "__metadata__": string -> string), then the raw little-endian tensor bytes. One F32
 * tensor per model segment: "<layer>.weight" shaped (OUT, IN), "<layer>.bias" shaped (OUT),
 * and, when the training data was scaled, "preprocess.shift" and "preprocess.mul" shaped
 * (D): the fitted transform x' = (x - shift) * mul.
 *
 * "__metadata__" holds, all values being strings as the format requires:
 *   format            "pt"
 *   producer          "pstrain"
 *   pstrain.version   "1"
 *   pstrain.model     JSON {"input_dim":D,"layers":[{"type":"dense","units":U,
 *                     "activation":"relu","name":null},...],"loss":"categorical_crossentropy"}
 *                     -- enough to rebuild the model with no job file
 *   pstrain.data      JSON {"task":"classify"|"regress","num_classes":K,
 *                     "class_names":[...]|null,"scale":"none"|"minmax"|"standardize"}
 *   crc32.<tensor>    decimal CRC-32 (zlib's) of the tensor's bytes
 *   crc32.__header__  CRC-32 of the 8 length bytes and the N header bytes, computed with
 *                     this value's 10 zero-padded decimal digits set to "0000000000"
 * so every byte of the file is covered by a checksum.
 *
 * Writes are atomic: a temporary file in the same folder, fsync, rename, fsync of the
 * folder; a crash leaves the old file or the new one, never a mix.
 *
 * Reads take the whole file and validate all of it before any weight is used: the header
 * length, the JSON, every tensor entry (dtype F32, shape, data_offsets inside the data and
 * together covering it exactly, shape * 4 == byte length), the checksums, the metadata, that
 * the tensors are exactly the model's (names and shapes), and that every value is finite.
 * A failure is one line naming the file and the problem ("model.safetensors: tensor
 * 'dense_0.weight': shape [256, 784] but the model needs [128, 784]"), status PST_ERR_IO
 * when the file cannot be read and PST_ERR_DATA for any problem with its contents; nothing
 * is loaded then.
 *
 * Checksums are optional on reading (a file written by another tool may have none) and
 * checked when present; a file whose producer is "pstrain" must have all of them. */
#ifndef PSTRAIN_CORE_CKPT_H
#define PSTRAIN_CORE_CKPT_H

#include "config.h"
#include "data.h"
#include "err.h"
#include "model.h"

/* Writes m's weights to path. spec is the layer list m was built from (stored as
 * pstrain.model; NULL stores the weights only). like is the training data (its task and
 * class names go into pstrain.data; NULL leaves pstrain.data out) and scaler the transform
 * fitted on it (NULL or DS_SCALE_NONE: no preprocess tensors). A spec that does not
 * describe m, or two segments with one name, is PST_ERR_ARG. */
int ckpt_save_model(const char *path, ml_model *m, const cfg_model *spec,
                    const ds_dataset *like, const ds_scaler *scaler, pst_err *err);

/* A model rebuilt from a checkpoint, with what the data needs to go through it. */
typedef struct ckpt_model ckpt_model;

/* Reads a checkpoint that carries pstrain.model and pstrain.data, builds its model for
 * batches of at most max_batch rows and fills the weights. On success *out is owned by
 * the caller (ckpt_model_destroy); on failure *out is NULL. */
int ckpt_load(const char *path, int max_batch, ckpt_model **out, pst_err *err);
void ckpt_model_destroy(ckpt_model *c);

ml_model *ckpt_model_net(ckpt_model *c);             /* owned by c */
const cfg_model *ckpt_model_spec(const ckpt_model *c); /* owned by c */
ds_task ckpt_model_task(const ckpt_model *c);
/* Classification: K classes (2 for a single sigmoid unit); 0 for regression. */
int ckpt_model_nclasses(const ckpt_model *c);
/* Name of class k when the training labels were names, else NULL. */
const char *ckpt_model_class_name(const ckpt_model *c, int k);
/* The training data's fitted transform: always fitted (shift 0, mul 1 for "none"), D =
 * the model's input width; apply it to new data with ds_scaler_apply. */
const ds_scaler *ckpt_model_scaler(const ckpt_model *c);

/* Loads the weights of the checkpoint at path into m, matching tensors to m's segments by
 * name, for a caller that knows the architecture (the file need not carry pstrain
 * metadata). scaler (may be NULL) receives the preprocess tensors when the file has them
 * and pstrain.data says how they were fitted, else the identity of m's input width; it is
 * output storage like ds_scaler_fit's. m is unchanged on failure. */
int ckpt_load_into(const char *path, ml_model *m, ds_scaler *scaler, pst_err *err);

#endif
