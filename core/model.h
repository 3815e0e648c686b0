/* core/model.h -- a list of layers with named inputs, all parameters in one allocation.
 *
 * A model is built from an ml_model_spec (core/layer.h): layers in order, each reading the
 * outputs of earlier layers by name (default: the previous layer, so a plain list is a
 * sequential stack) and the last one giving the output. Layer types come from the
 * registry; a type with an `activation` key (dense) runs it as a step of its own.
 *
 * The parameters of every layer live in one flat float vector, in layer order, each layer
 * as its tensors in its type's order (dense: weight (OUT, IN) then bias (OUT)). A server's shard is a slice
 * [offset, offset + len) of this vector and ml_model_segments names its pieces
 * ("dense_0.weight"). Gradients have the same layout in a second vector.
 *
 * A step is ml_model_forward (keeps the activations it needs), ml_model_loss (loss of the
 * output against the batch's targets, seeding the output gradient) and ml_model_backward
 * (writes every parameter gradient). Softmax + categorical cross-entropy and sigmoid +
 * binary cross-entropy at the output are fused into the numerically stable forms of nn.h.
 *
 * Sparse layers (embedding, embedding_bag, fm: core/layer.h) read the batch's sparse
 * features and keep their parameters in embedding tables outside the flat vector: the
 * model never holds a table, only the rows of one batch. A step of a model with tables:
 *
 *   ml_model_gather(m, &sb, &err);                  per table: unique keys, entry index
 *   for t < ml_model_ntables(m):                    fill the rows of those keys
 *       K = ml_model_table_nkeys(m, t); keys = ml_model_table_keys(m, t);
 *       rows = ml_model_table_rows(m, t);           (K, d): pull from servers / a table
 *   ml_model_forward_sparse(m, x, &sb, n);
 *   ml_model_loss(m, label, target, n);
 *   ml_model_backward_sparse(m, x, &sb, n);
 *   ml_model_grads(m) (P) and, per table, ml_model_table_grads(m, t) (K, d), one row per
 *   key of ml_model_table_keys summed over all its entries: push those.
 *
 * x may be NULL when no layer reads ML_INPUT_NAME. A dense-only model has no tables
 * (ml_model_ntables 0, ml_model_gather a no-op) and ml_model_forward/backward are the
 * same calls with no sparse batch.
 *
 * Tied tensors: a layer type with a tie key (lm_head's `tie: <layer>`) reads tensor 0 of
 * an earlier layer (the token embedding's wte) instead of owning one: it has no segment
 * and no space in the flat vector, and backward adds both layers' gradients into the
 * owner's (the model keeps the owner's share in a buffer of that tensor's size).
 *
 * Thread-safety: none; one model per thread. */
#ifndef PSTRAIN_CORE_MODEL_H
#define PSTRAIN_CORE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "layer.h"
#include "nn.h"

typedef struct ml_model ml_model;

/* A named contiguous piece of the flat parameter vector. */
typedef struct {
    char name[48];  /* "<layer>.<tensor>": "dense_0.weight", "head.bias" */
    int layer;      /* index of the layer in the model spec */
    size_t offset;  /* in floats */
    size_t len;     /* in floats */
    int rows, cols; /* the tensor's shape: (OUT, IN) for a weight, (OUT, 1) for a bias */
    int state;      /* non-gradient state (batchnorm's running statistics): frozen for the
                     * optimizer, written by training forwards (core/layer.h ml_tensor) */
} ml_segment;

/* An embedding table as the caller must keep it: name (the layers' `table` key, or the
 * one layer's name), row width d, and the scale new rows are drawn with (the layer's
 * init_scale). layer: the first spec layer reading it (its lr_mult, say, as a segment's
 * layer gives a dense tensor's). name is the model's, valid while it lives. */
typedef struct {
    const char *name;
    int dim;
    float init_scale;
    int layer;
} ml_table_info;

/* Builds the model for inputs of in_dim features (0 allowed when no layer reads the dense
 * input) and batches of at most max_batch rows
 * (ml_model_spec_check first; the model keeps a copy of spec). Parameters are zero until
 * ml_model_init. */
ml_model *ml_model_create(const ml_model_spec *spec, int in_dim, int max_batch, pst_err *err);
/* The same for an input of shape in ((C, H, W) images, (D) features; core/layer.h's
 * "Shapes"); ml_model_create is this with (in_dim). */
ml_model *ml_model_create_shaped(const ml_model_spec *spec, const ml_shape *in, int max_batch,
                                 pst_err *err);
void ml_model_destroy(ml_model *m);

/* Every layer's init in order from one seeded stream: He-normal for a layer whose output
 * feeds a ReLU, Glorot-uniform otherwise (ML_INIT_AUTO), or the scheme spec.init forces.
 * Deterministic. */
void ml_model_init(ml_model *m, uint64_t seed);

size_t ml_model_nparams(const ml_model *m);
/* Makes g (P floats, owned by the caller, or NULL for the model's own buffer) the buffer
 * that ml_model_backward writes and ml_model_grads returns. A worker alternates two
 * buffers so one step's gradient can still be on the wire while the next is computed. */
void ml_model_use_grads(ml_model *m, float *g);
float *ml_model_params(ml_model *m); /* (P) */
float *ml_model_grads(ml_model *m);  /* (P) */
int ml_model_in_dim(const ml_model *m);
ml_shape ml_model_in_shape(const ml_model *m);

/* Training (1) or evaluation (0, the default after create) for the forwards that follow,
 * and the step's seed: dropout draws its mask from (seed, layer) in training and is the
 * identity in evaluation; batchnorm uses the batch's statistics and updates its running
 * ones in training, and the running ones in evaluation. A trainer calls it before every
 * training step (a new seed per step) and before evaluating. */
void ml_model_set_mode(ml_model *m, int training, uint64_t seed);
int ml_model_out_dim(const ml_model *m);
int ml_model_max_batch(const ml_model *m);
ml_loss ml_model_loss_kind(const ml_model *m);
const ml_model_spec *ml_model_get_spec(const ml_model *m); /* the model's copy */
/* Floating-point operations of one training step (forward + backward) on n rows. */
double ml_model_flops(const ml_model *m, int n);
int ml_model_nsegments(const ml_model *m);
const ml_segment *ml_model_segment(const ml_model *m, int i);

/* Freezes (trainable 0) or unfreezes the parameters of spec layer `layer` (layers without
 * parameters ignore it). ml_model_backward then writes no gradient for a frozen layer -- its
 * entries of ml_model_grads keep whatever they held -- and stops below the lowest trainable
 * layer, since nothing under it needs dL/dx (a frozen body costs a forward pass only).
 * All layers are trainable after ml_model_create. */
void ml_model_set_trainable(ml_model *m, int layer, int trainable);

/* Runs the layers on x: (n, IN), n <= max_batch. Returns the model's output (n, OUT),
 * valid until the next forward: probabilities for softmax/sigmoid outputs, raw values for
 * linear ones. A model with sparse layers takes ml_model_forward_sparse instead. */
const float *ml_model_forward(ml_model *m, const float *x, int n);

/* Loss of the last forward's output: classification uses label (N), regression and binary
 * targets use target (N, OUT) (for BCE with label given and target NULL, label is the 0/1
 * target); sequence_crossentropy (a language model's logits (N, T*V)) uses label (N, T),
 * the next token at each position, and returns the mean over the N*T positions of
 * -log softmax(logits_t)[label_t]. Also computes the output gradient for
 * ml_model_backward. */
double ml_model_loss(ml_model *m, const int32_t *label, const float *target, int n);

/* Writes dL/dparams of the last forward/loss into ml_model_grads. x is the batch given to
 * forward. */
void ml_model_backward(ml_model *m, const float *x, int n);

/* ---- Sparse layers ------------------------------------------------------------------ */

int ml_model_ntables(const ml_model *m);
ml_table_info ml_model_table_info(const ml_model *m, int t);

/* De-duplicates batch b's ids per table: keys in first-appearance order (entry order)
 * and each entry's key index (-1 for an entry no layer of the table reads, by field).
 * Refuses (PST_ERR_ARG) more than max_batch rows or a malformed row_ptr. b stays borrowed
 * until backward: forward and backward must be given the same batch. */
int ml_model_gather(ml_model *m, const ml_sparse_batch *b, pst_err *err);
size_t ml_model_table_nkeys(const ml_model *m, int t);         /* K */
const uint64_t *ml_model_table_keys(const ml_model *m, int t); /* (K) */
const int32_t *ml_model_table_index(const ml_model *m, int t); /* (NNZ) */
/* (K, d): the caller writes row k for key k before forward; valid until the next gather. */
float *ml_model_table_rows(ml_model *m, int t);
/* (K, d): dL/d(row k) after ml_model_backward_sparse, summed over every entry of key k
 * (zeros for a table only frozen layers read). Valid until the next gather. */
float *ml_model_table_grads(ml_model *m, int t); /* the caller may scale them (clipping) */

/* ml_model_forward / ml_model_backward with the batch's sparse features b (gathered
 * first; b NULL for a model without sparse layers). */
const float *ml_model_forward_sparse(ml_model *m, const float *x, const ml_sparse_batch *b, int n);
void ml_model_backward_sparse(ml_model *m, const float *x, const ml_sparse_batch *b, int n);

#endif
