/* core/model.h -- a Keras-like stack of layers with all parameters in one allocation.
 *
 * The parameters of every layer live in one flat float vector, in layer order, each dense
 * layer as its weight (OUT, IN) then its bias (OUT). A server's shard is a slice
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

#include "config.h"
#include "base/err.h"
#include "nn.h"

typedef struct ml_model ml_model;

/* A named contiguous piece of the flat parameter vector. */
typedef struct {
    char name[48];   /* "<layer>.weight" or "<layer>.bias" */
    int layer;       /* index of the layer in the model spec */
    size_t offset;   /* in floats */
    size_t len;      /* in floats */
    int rows, cols;  /* shape: (OUT, IN) for a weight, (OUT, 1) for a bias */
} ml_segment;

/* Builds the model for inputs of in_dim features and batches of at most max_batch rows.
 * Parameters are zero until ml_model_init. */
ml_model *ml_model_create(const cfg_model *spec, int in_dim, int max_batch, pst_err *err);
void ml_model_destroy(ml_model *m);

/* Glorot-uniform (linear/sigmoid/tanh/softmax layers) or He-normal (relu) weights, zero
 * biases, drawn from seed; cfg_init forces one scheme for all layers. Deterministic. */
void ml_model_init(ml_model *m, uint64_t seed);

size_t ml_model_nparams(const ml_model *m);
/* Makes g (P floats, owned by the caller, or NULL for the model's own buffer) the buffer
 * that ml_model_backward writes and ml_model_grads returns. A worker alternates two
 * buffers so one step's gradient can still be on the wire while the next is computed. */
void ml_model_use_grads(ml_model *m, float *g);
float *ml_model_params(ml_model *m);       /* (P) */
float *ml_model_grads(ml_model *m);        /* (P) */
int ml_model_in_dim(const ml_model *m);
int ml_model_out_dim(const ml_model *m);
int ml_model_max_batch(const ml_model *m);
cfg_loss ml_model_loss_kind(const ml_model *m);
int ml_model_nsegments(const ml_model *m);
const ml_segment *ml_model_segment(const ml_model *m, int i);

/* Freezes (trainable 0) or unfreezes the parameters of spec layer `layer` (a dense layer;
 * others have none). ml_model_backward then writes no gradient for a frozen layer -- its
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
