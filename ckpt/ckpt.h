/* ckpt/ckpt.h -- model checkpoints on disk in the safetensors format.
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
#ifndef PSTRAIN_CKPT_CKPT_H
#define PSTRAIN_CKPT_CKPT_H

#include "base/err.h"
#include "core/model.h"
#include "core/optim.h"
#include "data/data.h"

/* Writes m's weights to path. spec is the layer list m was built from (stored as
 * pstrain.model; NULL stores the weights only). like is the training data (its task and
 * class names go into pstrain.data; NULL leaves pstrain.data out) and scaler the transform
 * fitted on it (NULL or DS_SCALE_NONE: no preprocess tensors). A spec that does not
 * describe m, or two segments with one name, is PST_ERR_ARG. */
int ckpt_save_model(const char *path, ml_model *m, const ml_model_spec *spec,
                    const ds_dataset *like, const ds_scaler *scaler, pst_err *err);

/* A model rebuilt from a checkpoint, with what the data needs to go through it. */
typedef struct ckpt_model ckpt_model;

/* Reads a checkpoint that carries pstrain.model and pstrain.data, builds its model for
 * batches of at most max_batch rows and fills the weights. On success *out is owned by
 * the caller (ckpt_model_destroy); on failure *out is NULL. */
int ckpt_load(const char *path, int max_batch, ckpt_model **out, pst_err *err);
/* The same reading layer types from reg (NULL: the built-in registry), which must outlive
 * *out. */
int ckpt_load_reg(const char *path, const ml_registry *reg, int max_batch, ckpt_model **out,
                  pst_err *err);
void ckpt_model_destroy(ckpt_model *c);

ml_model *ckpt_model_net(ckpt_model *c);                   /* owned by c */
const ml_model_spec *ckpt_model_spec(const ckpt_model *c); /* owned by c */
ds_task ckpt_model_task(const ckpt_model *c);
/* Classification: K classes (2 for a single sigmoid unit); 0 for regression. */
int ckpt_model_nclasses(const ckpt_model *c);
/* Name of class k when the training labels were names, else NULL. */
const char *ckpt_model_class_name(const ckpt_model *c, int k);
/* The training data's fitted transform: always fitted (shift 0, mul 1 for "none"), D =
 * the model's input width; apply it to new data with ds_scaler_apply. */
const ds_scaler *ckpt_model_scaler(const ckpt_model *c);
/* How the file stored the weights: "fp32", or "fp16"/"int8" for an export (ckpt/quant.h),
 * widened to float on load. */
const char *ckpt_model_dtype(const ckpt_model *c);
/* Rebuilds c's model for batches of at most max_batch rows, with the same weights, so
 * that a caller who loaded the file before it knew its batch need not read it again
 * (pstrain eval). On failure c is unchanged. */
int ckpt_model_set_max_batch(ckpt_model *c, int max_batch, pst_err *err);

/* Loads the weights of the checkpoint at path into m, matching tensors to m's segments by
 * name, for a caller that knows the architecture (the file need not carry pstrain
 * metadata). scaler (may be NULL) receives the preprocess tensors when the file has them
 * and pstrain.data says how they were fitted, else the identity of m's input width; it is
 * output storage like ds_scaler_fit's. m is unchanged on failure. */
int ckpt_load_into(const char *path, ml_model *m, ds_scaler *scaler, pst_err *err);
int ckpt_load_into_reg(const char *path, const ml_registry *reg, ml_model *m, ds_scaler *scaler,
                       pst_err *err);

/* ---- Training state, for resuming ---------------------------------------------------------
 *
 * A state file has the format and guarantees of a model checkpoint (atomic write, a CRC-32
 * of every tensor and of the header, the whole file validated before anything is used)
 * and holds F32 tensors (1-D) and named scalars in "__metadata__":
 *   state.kind     what the file holds: "optimizer" (single-process training, next to its
 *                  model.safetensors) or "shard" (a parameter server's slice)
 *   state.<key>    a decimal int64, a double written with 17 significant digits (it reads
 *                  back bit for bit) or a short string
 * The optimizer's state is stored as the tensors of what it keeps: opt.velocity
 * (momentum, nesterov), opt.sum_sq (adagrad's G), opt.mean_sq (rmsprop's E), opt.m and
 * opt.v (adam, adamw), opt.z and opt.n (ftrl), none for sgd; with state.opt.kind (its name) and state.opt.t (the
 * steps taken, which drive the schedule and adam's bias correction).
 *
 * Writing: create, set scalars and add tensors (borrowed until save), save. Keys and tensor
 * names are 1 to 47 of [A-Za-z0-9_.-]; a repeat is PST_ERR_ARG. Reading: load, then get;
 * every getter's failure names the file and the key (PST_ERR_DATA). */
typedef struct ckpt_state ckpt_state;

ckpt_state *ckpt_state_create(const char *kind, pst_err *err);
void ckpt_state_destroy(ckpt_state *st);
int ckpt_state_set_int(ckpt_state *st, const char *key, int64_t v, pst_err *err);
int ckpt_state_set_double(ckpt_state *st, const char *key, double v, pst_err *err);
int ckpt_state_set_str(ckpt_state *st, const char *key, const char *v, pst_err *err);
int ckpt_state_add_tensor(ckpt_state *st, const char *name, const float *p, size_t n, pst_err *err);
/* Adds the state of a `kind` optimizer (tensors borrowed from os). */
int ckpt_state_add_opt(ckpt_state *st, opt_kind kind, opt_state *os, pst_err *err);
int ckpt_state_save(const ckpt_state *st, const char *path, pst_err *err);

/* Reads and validates the whole file, which must be pstrain's state file of `kind`. On
 * success *out is the caller's (ckpt_state_destroy); on failure NULL. */
int ckpt_state_load(const char *path, const char *kind, ckpt_state **out, pst_err *err);
const char *ckpt_state_kind(const ckpt_state *st);
int ckpt_state_get_int(const ckpt_state *st, const char *key, int64_t *v, pst_err *err);
int ckpt_state_get_double(const ckpt_state *st, const char *key, double *v, pst_err *err);
int ckpt_state_get_str(const ckpt_state *st, const char *key, const char **v, pst_err *err);
/* The tensor `name`, which must hold n floats; *p (4-byte aligned) lives as long as st. */
int ckpt_state_get_tensor(const ckpt_state *st, const char *name, size_t n, const float **p,
                          pst_err *err);
/* Checks that st holds the state of a `kind` optimizer over n parameters; then
 * ckpt_state_restore_opt copies it into os (of that kind and length), which cannot fail.
 * Two calls so that a caller restoring several things checks them all before changing
 * any. */
int ckpt_state_check_opt(const ckpt_state *st, opt_kind kind, size_t n, pst_err *err);
void ckpt_state_restore_opt(const ckpt_state *st, opt_kind kind, opt_state *os);

/* ---- Checkpoint folders ---------------------------------------------------------------------
 *
 * The checkpoints of a run sit in one folder as entries named <prefix><N><suffix>, N a
 * decimal step or clock: "ckpt-120" (a folder: model.safetensors + optimizer.safetensors),
 * "server-0-clock-96.safetensors". The newest is the largest N. */

/* The N of dir's entries prefix N suffix, newest first, at most max of them; *n is how
 * many (0 when dir does not exist). Leftovers of unfinished writes (".tmp.<pid>" after the
 * suffix) are not listed. */
int ckpt_list(const char *dir, const char *prefix, const char *suffix, int64_t *tags, int max,
              int *n, pst_err *err);
/* Removes all but the `keep` newest entries prefix N suffix (folders with their files), and
 * leftovers of other processes' unfinished writes. */
int ckpt_prune(const char *dir, const char *prefix, const char *suffix, int keep, pst_err *err);
/* Removes the entries prefix N suffix with N > after (all of them for after = -1): a
 * resumed run clears those newer than where it resumed (damaged, or of the timeline it
 * replaces), so that "the newest" always means this run's newest. */
int ckpt_remove_newer(const char *dir, const char *prefix, const char *suffix, int64_t after,
                      pst_err *err);
/* A fresh run in a folder that holds an earlier run's checkpoints must neither resume
 * them by mistake nor destroy them before it has one of its own: ckpt_set_aside moves
 * dir's entries prefix N suffix into dir/CKPT_ASIDE (replacing those set aside there
 * before, of a run earlier still) and says in *moved how many; `--resume dir/previous-run`
 * continues that run. Once the new run has written its first checkpoint, ckpt_drop_aside
 * removes them (and the folder when it is left empty); *removed: how many. */
#define CKPT_ASIDE "previous-run"
int ckpt_set_aside(const char *dir, const char *prefix, const char *suffix, int *moved,
                   pst_err *err);
int ckpt_drop_aside(const char *dir, const char *prefix, const char *suffix, int *removed,
                    pst_err *err);
/* A folder written atomically: ckpt_dir_begin makes the empty folder "<path>.tmp.<pid>"
 * (its name in tmp) for the caller to fill; ckpt_dir_commit renames it to path (replacing
 * an older one) and syncs the parent, so path is either complete or absent. */
int ckpt_dir_begin(const char *path, char *tmp, size_t cap, pst_err *err);
int ckpt_dir_commit(const char *tmp, const char *path, pst_err *err);
/* Removes the temporary folder of a write that failed (errors ignored: a leftover is
 * removed by the next ckpt_prune). */
void ckpt_dir_abort(const char *tmp);

/* ---- Fine-tuning: a model's initial weights from another model's checkpoint ------------ */

/* What ckpt_init_from matched. Name lists are comma-separated, cut with " ..." when long. */
typedef struct {
    int loaded;  /* model parameters copied from the file */
    int fresh;   /* model parameters the file lacks: they keep their values */
    int skipped; /* tensors of the file the model lacks (preprocess.* aside) */
    char fresh_names[256];
    char skipped_names[256];
} ckpt_init_report;

/* Copies into m, by name, every parameter the checkpoint at path holds (job key
 * model.init_from). The file is validated whole as ckpt_load_into does and only read.
 * A tensor named like a parameter but shaped otherwise is PST_ERR_DATA naming the tensor
 * and both shapes; a parameter the file lacks keeps its value (a new head: give the layer
 * a new name and it starts from its fresh initialisation); a tensor the model lacks is
 * skipped (the old head). A file holding none of the model's parameters is PST_ERR_DATA.
 * m is unchanged on failure; *rep says what happened (zeroed on failure) and loaded (may be
 * NULL; ml_model_nsegments entries) which segments were copied. */
int ckpt_init_from(const char *path, ml_model *m, unsigned char *loaded, ckpt_init_report *rep,
                   pst_err *err);

#endif
