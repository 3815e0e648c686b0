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
} ml_segment;

/* Builds the model for inputs of in_dim features and batches of at most max_batch rows
 * (ml_model_spec_check first; the model keeps a copy of spec). Parameters are zero until
 * ml_model_init. */
ml_model *ml_model_create(const ml_model_spec *spec, int in_dim, int max_batch, pst_err *err);
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
 * linear ones. */
const float *ml_model_forward(ml_model *m, const float *x, int n);

/* Loss of the last forward's output: classification uses label (N), regression and binary
 * targets use target (N, OUT) (for BCE with label given and target NULL, label is the 0/1
 * target). Also computes the output gradient for ml_model_backward. */
double ml_model_loss(ml_model *m, const int32_t *label, const float *target, int n);

/* Writes dL/dparams of the last forward/loss into ml_model_grads. x is the batch given to
 * forward. */
void ml_model_backward(ml_model *m, const float *x, int n);

#endif
