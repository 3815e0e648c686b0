/* core/layer.h -- layer types as ops tables, the registry that lists them, and the model
 * spec (a list of layers with named inputs) that ml_model_create builds from.
 *
 * A layer type is one const ml_layer_ops with designated initialisers, in a file of its
 * own (core/layers/dense.c): its name (the job file's `type:`), a summary, the config keys
 * it accepts (ml_layer_key: name, kind, default, range, doc), and the functions that give
 * its shape (output width and named parameter tensors), initialise, run forward and
 * backward, and count FLOPs. core/layers/registry.c lists the built-in types; that list is
 * the only place a new type is named. The job parser, checkpoint metadata, --print-config,
 * `pstrain --help` and docs/job-file.md's table all read the registry.
 *
 * The built-in registry is const (ml_registry_builtin). A program that defines layer types
 * of its own (a test) makes a registry with ml_registry_create, adds them, and passes it
 * where specs are made from text: the job loader (cfg_job_load_string_reg) and the
 * checkpoint reader. Specs point at ops tables, so a registry outlives every spec made
 * with it. Nothing here is global mutable state.
 *
 * Dimensions: N = batch rows; a layer maps inputs (N, IN_k) to one output (N, OUT).
 *
 * Shapes: each input also has a shape (ml_shape: (C, H, W) for images, (F) for features;
 * IN_k = the product), and each layer an output shape. A sample is its shape's elements
 * row-major: an image is C planes of H rows of W. The model input's shape comes from the
 * data (IDX images (1, 28, 28), anything else (D)); ml_model_create_shaped passes it. Types
 * that care (conv2d, pools, batchnorm, flatten) read l->in_shape and set l->out_shape; a
 * type that leaves out_shape unset gets its first input's shape when it has no parameters
 * and keeps that width (activation, add, dropout), and (OUT) otherwise (dense flattens
 * its input as Keras' Flatten + Dense would).
 *
 * Sparse layers (ops->sparse: embedding, embedding_bag, fm) read the batch's sparse
 * features (ML_SPARSE_NAME in `inputs:`) instead of dense inputs. Their parameters are
 * rows of an embedding table keyed by 64-bit feature ids, NOT in the model's flat vector:
 * the model gathers the batch's unique keys per table, the caller fills their rows, and
 * backward gives the rows' gradients summed per key (core/model.h). Sparse legend:
 *   NNZ = entries of the batch (all rows), K = unique keys of one table in the batch,
 *   d = the table's row width (dim), F = fields an `embedding` reads. */
#ifndef PSTRAIN_CORE_LAYER_H
#define PSTRAIN_CORE_LAYER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "base/rng.h"

#define ML_MAX_KEYS 8           /* config keys of one layer type */
#define ML_MAX_INPUTS 8         /* inputs of one layer */
#define ML_MAX_TENSORS 4        /* parameter tensors of one layer */
#define ML_NAME_MAX 39          /* a layer name: 39 bytes + ".weight" fit a segment name */
#define ML_INPUT_NAME "input"   /* the reserved name of the model's input in `inputs:` */
#define ML_SPARSE_NAME "sparse" /* the reserved name of the batch's sparse features */
/* ml_model_spec_sources' codes for the two model inputs (otherwise a layer index). */
#define ML_SRC_INPUT (-1)
#define ML_SRC_SPARSE (-2)

/* ---- Shapes ------------------------------------------------------------------------- */

#define ML_MAX_RANK 3 /* (C, H, W) */

/* A sample's shape: rank 1 (F) or 3 (C, H, W); rank 0 = unset. */
typedef struct {
    int rank;
    int d[ML_MAX_RANK];
} ml_shape;

/* The product of the dimensions (0 for rank 0). */
static inline int ml_shape_width(const ml_shape *s)
{
    int w = s->rank ? 1 : 0;
    for (int i = 0; i < s->rank; i++)
        w *= s->d[i];
    return w;
}

static inline ml_shape ml_shape_flat(int width) { return (ml_shape){1, {width, 0, 0}}; }
static inline ml_shape ml_shape_image(int c, int h, int w) { return (ml_shape){3, {c, h, w}}; }
/* "(1, 28, 28)" or "(784)" into buf. */
void ml_shape_text(const ml_shape *s, char *buf, size_t n);

/* ---- Losses and init schemes: one name table each (the job file and checkpoints) ----- */

/* X(value, name): the one list of names, expanded here and wherever a table is needed
 * (the job schema's libcyaml tables). */
#define ML_LOSS_NAMES(X)                                                                           \
    X(ML_LOSS_CCE, "categorical_crossentropy")                                                     \
    X(ML_LOSS_BCE, "binary_crossentropy")                                                          \
    X(ML_LOSS_MSE, "mse")                                                                          \
    X(ML_LOSS_SEQ_CCE, "sequence_crossentropy")
#define ML_INIT_NAMES(X) X(ML_INIT_AUTO, "auto") X(ML_INIT_GLOROT, "glorot") X(ML_INIT_HE, "he")
#define ML_ENUM_VALUE(v, name) v,
typedef enum { ML_LOSS_NAMES(ML_ENUM_VALUE) ML_LOSS_COUNT } ml_loss;
typedef enum { ML_INIT_NAMES(ML_ENUM_VALUE) ML_INIT_COUNT } ml_init;
/* Names by value ("categorical_crossentropy", "auto"), NULL past the end; -1 when absent. */
const char *ml_loss_name(int loss);
int ml_loss_find(const char *name);
const char *ml_init_name(int init);

/* ---- Activations: the one table of names and kernels ------------------------------- */

/* An elementwise (or row-wise) function y = f(x) and its backward from the output y:
 * dx = dy * f'(x) written as a function of y. forward may run in place (y == x), backward
 * with dx == dy. Shapes: (rows, cols), row-major. */
typedef struct {
    const char *name;
    const char *doc;
    void (*forward)(float *y, const float *x, int rows, int cols);
    void (*backward)(float *dx, const float *dy, const float *y, int rows, int cols);
    /* Set for a function whose derivative is no function of y (GELU): backward from the
     * input x instead, dx = dy * f'(x) (dx == dy allowed); `backward` is then unused. */
    void (*backward_x)(float *dx, const float *dy, const float *x, int rows, int cols);
    int he_init;    /* ML_INIT_AUTO draws He-normal weights for a layer feeding it */
    int fused_loss; /* the loss fused with it at the output (ML_LOSS_CCE for softmax), or -1 */
} ml_activation;

int ml_activation_count(void);
const ml_activation *ml_activation_at(int i); /* i in [0, count); 0 is "linear" */
const char *ml_activation_name(int i);        /* NULL past the end */
int ml_activation_find(const char *name);     /* index, or -1 */

/* ---- Config keys -------------------------------------------------------------------- */

typedef enum { ML_KEY_INT = 0, ML_KEY_FLOAT, ML_KEY_BOOL, ML_KEY_ENUM, ML_KEY_STRING } ml_key_kind;

enum {
    ML_KEY_REQUIRED = 1, /* docs: no useful default (the default fails the range check) */
    /* Accepted and printed (so job files and fingerprints of pstrain 0.1 stay valid) but
     * without effect, not documented and not stored in checkpoints. */
    ML_KEY_COMPAT = 2,
};

typedef struct {
    const char *name;
    ml_key_kind kind;
    double def;      /* int, float, bool (0/1), enum (the index of the name) */
    double min, max; /* int, float: the inclusive range; max < min: no upper bound */
    const char *(*enum_name)(int i); /* enum: the value names by index, NULL past the end */
    const char *doc;
    int flags; /* ML_KEY_* */
} ml_layer_key;

/* A key's value in a spec: int, bool and enum (the name's index) in i, float in f,
 * string in s (owned by the spec, NULL = unset). */
typedef union {
    int64_t i;
    double f;
    char *s;
} ml_value;

/* ---- Sparse features ---------------------------------------------------------------- */

/* A batch's sparse features: n rows in CSR. Row i's entries are e in [row_ptr[i],
 * row_ptr[i+1]) (row_ptr[0] may be > 0: a view into a larger CSR); entry e is feature id
 * ids[e] with value vals[e] in field fields[e]. Borrowed by whoever reads it.
 *   row_ptr (n+1) int64   ids (NNZ) uint64   vals (NNZ) float   fields (NNZ) uint32 or
 *   NULL (every entry in field 0). */
typedef struct {
    int n;
    const int64_t *row_ptr;
    const uint64_t *ids;
    const float *vals;
    const uint32_t *fields;
} ml_sparse_batch;

/* What a sparse layer's forward/backward sees: the batch plus, per entry, the row of its
 * key in the gathered rows of the layer's table. Entries a layer does not read (another
 * field) it skips by their field; their idx is -1 when no layer of the table reads them.
 *   idx (NNZ) int32, entry e at idx[e - e0]   rows (K, d) */
typedef struct {
    const int64_t *row_ptr;
    const float *vals;
    const uint32_t *fields;
    const int32_t *idx;
    int64_t e0; /* row_ptr[0] */
    const float *rows;
} ml_sparse_in;

/* The field of entry e (0 without fields). */
static inline uint32_t ml_sparse_field(const ml_sparse_in *s, int64_t e)
{
    return s->fields ? s->fields[e] : 0u;
}

/* ---- Specs -------------------------------------------------------------------------- */

typedef struct ml_layer_ops ml_layer_ops;

/* One layer of a model spec. Strings are owned by whoever filled the spec (the job loader
 * and checkpoint reader use malloc; ml_layer_spec_fini frees those); a spec written in
 * code may point at literals and is then never fini'd. */
typedef struct {
    const ml_layer_ops *ops;   /* its type, borrowed from a registry */
    char *name;                /* NULL: "<prefix>_<k>" for the k-th layer of its type */
    char **inputs;             /* names of earlier layers, ML_INPUT_NAME or ML_SPARSE_NAME; */
    unsigned ninputs;          /*   0: the previous layer (the model input for layer 0;
                                *   ML_SPARSE_NAME for a sparse type) */
    int trainable;             /* 0: frozen, never updated (layers with parameters) */
    float lr_mult;             /* the layer's lr is the scheduled lr times this; >= 0 */
    ml_value val[ML_MAX_KEYS]; /* ops->keys[k]'s value in val[k] */
} ml_layer_spec;

typedef struct {
    ml_layer_spec *layers;
    unsigned nlayers;
    ml_loss loss;
    ml_init init;
} ml_model_spec;

/* Type ops and every key at its default, trainable 1, lr_mult 1, no name or inputs. */
void ml_layer_spec_init(ml_layer_spec *s, const ml_layer_ops *ops);
/* Changes the type; values of keys both types have (same name and kind) carry over, the
 * others take the new type's defaults (string values of dropped keys are freed). */
void ml_layer_spec_set_type(ml_layer_spec *s, const ml_layer_ops *ops);
/* Frees name, inputs and string values (malloc'd) and zeroes s. */
void ml_layer_spec_fini(ml_layer_spec *s);
void ml_model_spec_fini(ml_model_spec *s); /* every layer, then the array */
/* Deep copy (malloc'd strings) of src into dst. */
int ml_model_spec_copy(ml_model_spec *dst, const ml_model_spec *src, pst_err *err);

/* Index of key `name` in ops->keys, or -1. */
int ml_layer_key_find(const ml_layer_ops *ops, const char *name);
/* Layer l's name: its own, or the default "<prefix>_<k>" (k counts earlier layers of the
 * same type), truncated to ML_NAME_MAX bytes. */
void ml_layer_spec_name(const ml_model_spec *s, unsigned l, char *buf, size_t n);
/* The activation the layer ends in: the activation layer's, or the `activation` key of a
 * type with post_activation; 0 (linear) otherwise. */
int ml_layer_spec_out_act(const ml_layer_spec *s);
/* Checks one key's value against its kind and range; the message is "<key>: ..." */
int ml_layer_key_check(const ml_layer_key *k, const ml_value *v, pst_err *err);

/* Resolves layer l's inputs to layer indices (ML_SRC_INPUT: the model input, ML_SRC_SPARSE:
 * the sparse features) in src[ML_MAX_INPUTS];
 * returns their number, or -1 with err set (a name that is no earlier layer). */
int ml_model_spec_sources(const ml_model_spec *s, unsigned l, int *src, pst_err *err);
/* Rewrites err's "key: why" as "model.layers.<l>.key: why"; returns err->code. */
int ml_layer_err_path(pst_err *err, unsigned l);

/* 1 when a and b describe the same model: loss, and per layer type, key values, name
 * (defaults resolved) and inputs; init and the fine-tuning fields do not count. */
int ml_model_spec_same(const ml_model_spec *a, const ml_model_spec *b);
/* The parameters a checked spec has for inputs of in_dim features, without building it
 * (a checkpoint reader refuses a spec larger than its file first); UINT64_MAX when a
 * layer refuses its shape or the count passes 2^60. */
uint64_t ml_model_spec_nparams(const ml_model_spec *s, int in_dim);
/* The same for an input of shape in. */
uint64_t ml_model_spec_nparams_shaped(const ml_model_spec *s, const ml_shape *in);

/* Validates a spec without building it: every key in range, names unique (and not
 * ML_INPUT_NAME), inputs naming earlier layers or the model input (no forward
 * references, so no cycles; names compare in their first ML_NAME_MAX bytes, as the
 * parameters are named), each type's number of inputs, every layer but the last used
 * by a later one, and at least one layer with parameters. Messages start with the path
 * "model.layers.N.key" (and name the layer where it helps). */
int ml_model_spec_check(const ml_model_spec *s, pst_err *err);

/* ---- Layer types -------------------------------------------------------------------- */

/* A parameter tensor of a layer: "weight" (rows, cols), "bias" (rows, 1). */
typedef struct {
    const char *name;
    int rows, cols;
} ml_tensor;

/* One layer of a built model as its ops see it: widths and parameter tensors, filled by
 * ops->shape from the spec and input widths. */
typedef struct {
    const ml_layer_spec *spec;
    int nin;
    int in[ML_MAX_INPUTS]; /* input widths (IN_k) */
    int out;               /* output width (OUT) */
    int ntensors;
    ml_tensor tensor[ML_MAX_TENSORS];
    /* Sparse types only (ops->sparse), from shape: */
    int dim;                     /* d, the table's row width */
    uint32_t field_lo, field_hi; /* the fields read: [lo, hi] inclusive */
    const char *table;           /* the `table` key, or NULL: the layer's own, named by it */
    float init_scale;            /* the scale the table draws new rows with */
    /* Shapes (core/layer.h's "Shapes"): filled by the model before shape; out_shape set
     * by shape for types that care (rank 0: the model picks). */
    ml_shape in_shape[ML_MAX_INPUTS];
    ml_shape out_shape;
    /* Types with ops->workspace: (workspace(max_batch)) floats the model owns, the layer's
     * own, kept from forward to backward (activations the backward needs, or scratch such
     * as conv2d's im2col columns). */
    float *ws;
    /* The mode (ml_model_set_mode): training 1 in a training step, 0 in evaluation (the
     * default); seed: the step's seed, mixed with index (the node's position) for
     * per-layer random streams (dropout). */
    int training;
    uint64_t seed;
    int index;
    /* Bit k set by shape: tensor k is non-gradient state (batchnorm's running mean and
     * variance). It lives in the flat vector (so checkpoints and pulls carry it),
     * backward writes zeros as its gradient, the optimizer leaves it (ml_segment.state:
     * a frozen group), and a training forward writes it through state[k] (the model
     * points it at the tensor; NULL for other tensors). */
    unsigned state_mask;
    float *state[ML_MAX_TENSORS];
} ml_layer;

struct ml_layer_ops {
    const char *name;    /* the job file's `type:` */
    const char *summary; /* one line for --help and docs/job-file.md */
    const char *prefix;  /* default layer names: "<prefix>_<k>" */
    const ml_layer_key *keys;
    int nkeys;
    int min_inputs, max_inputs;
    /* The `activation` key (an enum of the activation table) is applied by the model as a
     * step of its own after forward: the fused softmax/sigmoid losses and He init see it. */
    int post_activation;
    int has_params;        /* the type has parameter tensors (the job checks trainable etc.) */
    const char *width_key; /* the key that sets the output width ("units"), or NULL */
    /* backward accepts dx[0] == dy (one input of the output's width): the model then
     * lets the gradient of a sole consumer overwrite its input's in place. */
    int inplace;

    /* Fills l->out and l->tensor[] from l->spec and l->in[]; messages "key: why". */
    int (*shape)(ml_layer *l, pst_err *err);
    /* Writes every parameter: t[k] points at tensor k (rows * cols floats). he: the
     * scheme the model chose (He-normal when 1, Glorot-uniform when 0). */
    void (*init)(const ml_layer *l, float *const *t, int he, rng_state *r);
    /* y (N, OUT) from x[k] (N, IN_k). */
    void (*forward)(const ml_layer *l, float *y, const float *const *x, const float *const *t,
                    int n);
    /* From dy (N, OUT) and the forward's x and y: dx[k] (N, IN_k) overwritten, NULL when
     * not needed; dt[k] (tensor k's gradient) overwritten, all NULL for a frozen layer. */
    void (*backward)(const ml_layer *l, float *const *dx, float *const *dt, const float *dy,
                     const float *y, const float *const *x, const float *const *t, int n);
    /* Floating-point operations of forward + backward (with dx) for n rows (sparse types:
     * per entry read, so the count for n rows of one entry each). */
    double (*flops)(const ml_layer *l, int n);
    /* Optional: floats of l->ws the layer needs for n rows (attention keeps Q, K, V and
     * the attention weights for backward; conv2d needs one image's im2col columns,
     * batchnorm two floats per channel, whatever n). NULL: none. */
    size_t (*workspace)(const ml_layer *l, int n);
    /* Optional: the string key that ties tensor 0 to tensor 0 of an earlier layer (the
     * tied output head reads the token embedding's wte): when set, the model maps tensor
     * 0 onto that layer's (same shape), gives it no space or segment of its own, skips
     * its init and adds both gradients. */
    const char *tie_key;

    /* Sparse types: set `sparse`, and sforward/sbackward instead of forward/backward. */
    int sparse;
    /* y (N, OUT) from the entries of s it reads and its table's rows s->rows (K, d). */
    void (*sforward)(const ml_layer *l, float *y, const ml_sparse_in *s, const float *const *t,
                     int n);
    /* From dy (N, OUT): drows (K, d) ADDED into (tables are shared and a key repeats, so
     * the model zeroes it once per step), NULL for a frozen layer; dt[k] overwritten as
     * for dense types. */
    void (*sbackward)(const ml_layer *l, float *drows, float *const *dt, const float *dy,
                      const float *y, const ml_sparse_in *s, const float *const *t, int n);
};

/* ---- Registry ----------------------------------------------------------------------- */

typedef struct ml_registry ml_registry;

const ml_registry *ml_registry_builtin(void);
/* A registry holding base's types (NULL: the built-in ones), to which ml_registry_add
 * appends. The ops tables are borrowed: they must outlive the registry. */
ml_registry *ml_registry_create(const ml_registry *base, pst_err *err);
/* Refuses a repeated name, a bad key table (kinds, more than ML_MAX_KEYS, a key that
 * clashes with a common key: type, name, inputs, trainable, lr_mult) or missing functions. */
int ml_registry_add(ml_registry *r, const ml_layer_ops *ops, pst_err *err);
void ml_registry_destroy(ml_registry *r);

int ml_registry_count(const ml_registry *r);
const ml_layer_ops *ml_registry_at(const ml_registry *r, int i);
const ml_layer_ops *ml_registry_find(const ml_registry *r, const char *name);
/* "dense, activation" for messages. */
void ml_registry_names(const ml_registry *r, char *buf, size_t n);

/* The layer table of docs/job-file.md (markdown, one row per key) and the lines of
 * `pstrain --help` (one per type), both from the registry. */
int ml_registry_print_markdown(const ml_registry *r, FILE *f);
int ml_registry_print_help(const ml_registry *r, FILE *f);

/* The built-in types, for specs written in code (tests, benchmarks). */
extern const ml_layer_ops ml_layer_dense;
extern const ml_layer_ops ml_layer_activation;
extern const ml_layer_ops ml_layer_concat;
extern const ml_layer_ops ml_layer_add;
extern const ml_layer_ops ml_layer_dot_interaction;
extern const ml_layer_ops ml_layer_embedding;
extern const ml_layer_ops ml_layer_embedding_bag;
extern const ml_layer_ops ml_layer_fm;
extern const ml_layer_ops ml_layer_conv2d;
extern const ml_layer_ops ml_layer_max_pool2d;
extern const ml_layer_ops ml_layer_avg_pool2d;
extern const ml_layer_ops ml_layer_global_avg_pool;
extern const ml_layer_ops ml_layer_flatten;
extern const ml_layer_ops ml_layer_dropout;
extern const ml_layer_ops ml_layer_batchnorm;
/* Transformer (GPT-2) types: a sample is T tokens x C channels, row-major (N, T*C);
 * core/layers/attention.c's header gives the legend and the GPT-2 layout. */
extern const ml_layer_ops ml_layer_token_embedding;
extern const ml_layer_ops ml_layer_pos_embedding;
extern const ml_layer_ops ml_layer_layernorm;
extern const ml_layer_ops ml_layer_attention;
extern const ml_layer_ops ml_layer_token_dense;
extern const ml_layer_ops ml_layer_lm_head;

#endif
