/* data/data.h -- datasets in memory, their loaders and their preprocessing.
 *
 * A dataset is N samples of D float features, row-major x: (N, D), plus either
 *   - class labels: label[i] in [0, nclasses), for classification (binary is nclasses 2), or
 *   - real targets: target: (N, T), for regression.
 * Loaders read MNIST-style IDX files (gzip or plain, through zlib), CSV and libsvm text;
 * every malformed input is an error naming the file, the line or record and the problem.
 *
 * Ownership: a ds_dataset owns all its buffers; the pointers its accessors return stay
 * valid until ds_destroy. */
#ifndef PSTRAIN_DATA_DATA_H
#define PSTRAIN_DATA_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct ds_dataset ds_dataset;

/* The task of a dataset, with its name as job files (data.task) and checkpoint headers
 * (pstrain.data) spell it -- the one table of these names:
 *   classify  label[] valid, target NULL
 *   regress   target[] valid, label NULL */
#define DS_TASK_NAMES(X) X(DS_TASK_CLASSIFY, "classify") X(DS_TASK_REGRESS, "regress")
#define DS_ENUM_VALUE(v, name) v,
typedef enum { DS_TASK_NAMES(DS_ENUM_VALUE) DS_TASK_COUNT } ds_task;
/* Names by value ("classify"), NULL past the end; -1 when absent (or name is NULL). */
const char *ds_task_name(int task);
int ds_task_find(const char *name);

/* Creates an empty dataset of n samples with d features (all zero). For DS_TASK_CLASSIFY
 * nclasses > 0 and tdim is ignored; for DS_TASK_REGRESS tdim >= 1. */
ds_dataset *ds_create(int64_t n, int d, ds_task task, int nclasses, int tdim, pst_err *err);
void ds_destroy(ds_dataset *ds);

int64_t ds_count(const ds_dataset *ds);
int ds_dim(const ds_dataset *ds);
/* 1 and chw = (C, H, W) (C H W = D) when the rows are images (IDX: (1, rows, cols)),
 * carried by subsets and splits; 0 otherwise. */
int ds_image_shape(const ds_dataset *ds, int chw[3]);
ds_task ds_task_of(const ds_dataset *ds);
int ds_nclasses(const ds_dataset *ds);   /* 0 for regression */
int ds_target_dim(const ds_dataset *ds); /* 0 for classification */
float *ds_x(ds_dataset *ds);             /* (N, D) */
const float *ds_x_const(const ds_dataset *ds);
int32_t *ds_labels(ds_dataset *ds); /* (N) or NULL */
const int32_t *ds_labels_const(const ds_dataset *ds);
float *ds_targets(ds_dataset *ds); /* (N, T) or NULL */
const float *ds_targets_const(const ds_dataset *ds);
/* Name of class c when labels were strings in a CSV ("setosa"), else NULL. */
const char *ds_class_name(const ds_dataset *ds, int c);
/* Natural range of the raw features when the format fixes one (IDX uint8: 0..255);
 * returns 0 and fills lo/hi if known, -1 if not. Used by DS_SCALE_MINMAX. */
int ds_raw_range(const ds_dataset *ds, float *lo, float *hi);

/* ---- Loaders ---------------------------------------------------------------------- */

/* MNIST/Fashion-MNIST: an images file (magic 0x00000803, uint8, N x rows x cols) and a
 * labels file (magic 0x00000801, uint8, N). Either may be gzip-compressed. Labels must be
 * < nclasses (pass 0 to take max label + 1). Features are the raw bytes as floats. */
ds_dataset *ds_load_idx(const char *images_path, const char *labels_path, int nclasses,
                        pst_err *err);

/* Adapting IDX images (N, H, W) to the size a model takes (data.image): each becomes
 * (height, width) by
 *   DS_FIT_PAD     centred on a zero canvas, as torchvision's CenterCrop: zero rows and
 *                  columns added around a smaller image, the border cut off a larger one
 *                  (the odd one after: bottom, right);
 *   DS_FIT_RESIZE  bilinear interpolation with half-pixel centres, as PyTorch's
 *                  interpolate(mode="bilinear", align_corners=False, antialias=False) and
 *                  Keras' Resizing(interpolation="bilinear"):
 *                  src = (dst + 0.5) * in / out - 0.5, clamped to [0, in - 1].
 * height 0 keeps the file's size. Pixels stay in [0, 255]. */
typedef enum { DS_FIT_PAD = 0, DS_FIT_RESIZE } ds_fit;
ds_dataset *ds_load_idx_fit(const char *images_path, const char *labels_path, int nclasses,
                            int height, int width, ds_fit fit, pst_err *err);
/* One image: dst (oh, ow) from src (ih, iw), row-major. */
void ds_image_fit(float *dst, int oh, int ow, const float *src, int ih, int iw, ds_fit fit);

typedef struct {
    char delimiter;         /* ',' if 0 */
    int header;             /* 1: first line names the columns; 0: none; -1: guess */
    const char *label_name; /* label column by header name, or NULL */
    int label_index;        /* label column by 0-based index when label_name is NULL;
                                -1 means the last column, DS_CSV_NO_LABEL none at all
                                (every column a feature; labels/targets are 0: for
                                predicting on unlabelled data) */
    ds_task task;           /* classify: labels are class ids or strings; regress: floats */
    int nclasses;           /* classify with integer labels: 0 takes max label + 1 */
    /* Hashed columns (data.categorical, data.crosses), making a sparse part (sparse.h):
     * categorical[0..ncategorical) name columns by header (a header is then required) whose
     * text is hashed into one feature id each, field = its place in the list; crosses
     * "a x b" hash the pair of columns a and b, field = ncategorical + its place. Other
     * columns stay dense features. hash_bits 0..63 (0: 64-bit ids), hash_seed the seed. */
    const char *const *categorical;
    int ncategorical;
    const char *const *crosses;
    int ncrosses;
    int hash_bits;
    uint64_t hash_seed;
} ds_csv_options;

#define DS_CSV_NO_LABEL (-2)

/* CSV of numbers, one sample per line; blank lines are skipped. In classification the
 * label column may hold integers (0..nclasses-1) or strings (mapped to classes in order of
 * first appearance, names kept for ds_class_name). */
ds_dataset *ds_load_csv(const char *path, const ds_csv_options *opt, pst_err *err);

/* libsvm/svmlight: "label idx:val idx:val ..." with 1-based increasing indices; densified
 * into D = dim columns when dim > 0 (a larger index is an error), else D = the largest
 * index. Classification takes integer labels and maps -1/+1 (binary svmlight convention)
 * to 0/1; regression takes real labels. */
ds_dataset *ds_load_libsvm(const char *path, int dim, ds_task task, int nclasses, pst_err *err);

/* ---- Preprocessing ---------------------------------------------------------------- */

/* Feature scaling, with its name as job files (data.scale) and checkpoint headers spell
 * it -- the one table of these names:
 *   none         x unchanged
 *   minmax       (x - lo) / (hi - lo) into [0, 1]; raw range if known, else per-feature
 *                min/max of the fitting set; constant features -> 0
 *   standardize  (x - mean) / std per feature; std 0 -> 1 */
#define DS_SCALE_NAMES(X)                                                                          \
    X(DS_SCALE_NONE, "none") X(DS_SCALE_MINMAX, "minmax") X(DS_SCALE_STANDARDIZE, "standardize")
typedef enum { DS_SCALE_NAMES(DS_ENUM_VALUE) DS_SCALE_COUNT } ds_scale_kind;
/* Names by value ("minmax"), NULL past the end; -1 when absent (or name is NULL). */
const char *ds_scale_name(int kind);
int ds_scale_find(const char *name);

/* Per-feature transform x' = (x - shift) * mul, fitted on the training split and then
 * applied unchanged to validation and test data (and saved with checkpoints later). */
typedef struct {
    int d;
    ds_scale_kind kind;
    float *shift; /* (D) owned */
    float *mul;   /* (D) owned */
} ds_scaler;

int ds_scaler_fit(ds_scaler *s, ds_scale_kind kind, const ds_dataset *ds, pst_err *err);
int ds_scaler_apply(const ds_scaler *s, ds_dataset *ds, pst_err *err); /* dims must match */
void ds_scaler_fini(ds_scaler *s);

/* Returns a new dataset holding the given rows of ds, in that order. */
ds_dataset *ds_subset(const ds_dataset *ds, const int64_t *rows, int64_t n, pst_err *err);

/* Seeded random split: *train gets n - n_val rows, *val gets n_val = round(frac * n) rows
 * (both shuffled by seed). frac in [0, 1). */
int ds_split(const ds_dataset *ds, double frac, uint64_t seed, ds_dataset **train, ds_dataset **val,
             pst_err *err);

/* Partition k of nparts: rows [k*N/nparts, (k+1)*N/nparts) of ds after a seeded shuffle,
 * so the nparts partitions are disjoint, cover ds and differ in size by at most one. */
ds_dataset *ds_partition(const ds_dataset *ds, int nparts, int k, uint64_t seed, pst_err *err);

/* Renumbers ds's classes to ref's: when labels were strings, a class of ds gets the id of
 * the class of ref with the same name (a test file may list its classes in another order
 * than the training file). ds then has ref's class count and names. A name ref does not
 * know, or names on one side only, is PST_ERR_DATA naming `what` (ds's file). No-op when
 * neither has names. */
int ds_align_classes(ds_dataset *ds, const ds_dataset *ref, const char *what, pst_err *err);

/* Reorders ds in place exactly as ds_partition(ds, 1, 0, seed) would copy it, without a
 * second copy of the data. */
int ds_shuffle_inplace(ds_dataset *ds, uint64_t seed, pst_err *err);

/* A seeded random subset of n rows (data.limit), in seeded random order; n >= ds's count
 * gives all rows (shuffled). Classification is stratified: class c gets round(n * N_c / N)
 * rows (largest remainders, so they sum to n), at least one when n allows, as
 * scikit-learn's train_test_split(..., stratify=y) would take them; regression takes the
 * first n rows of the shuffle. It depends only on the labels, n and seed, so every worker
 * draws the same subset. */
ds_dataset *ds_sample(const ds_dataset *ds, int64_t n, uint64_t seed, pst_err *err);

/* counts[c] = the samples of class c, for c < ds_nclasses(ds) (classification only). */
void ds_class_counts(const ds_dataset *ds, int64_t *counts);

/* Integer class ids (no class names): raises ds's class count to k (>= the current one),
 * so that a class id that only a test file holds is a class of the training data too,
 * with no samples. PST_ERR_ARG for named classes or k below the count. */
int ds_widen_classes(ds_dataset *ds, int k, pst_err *err);

/* Keeps only the samples whose label is in keep[0..nkeep) and relabels them 0..nkeep-1
 * in that order (for taking a subset of classes). */
ds_dataset *ds_filter_classes(const ds_dataset *ds, const int *keep, int nkeep, pst_err *err);

#endif
