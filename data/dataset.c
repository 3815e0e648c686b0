/* data/dataset.c -- the dataset object: create, destroy, accessors, and the
 * size helpers the loaders share. */
#include "data_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- Sizes and small helpers -------------------------------------------------------- */

/* *out = a * b * c, or -1 when the product does not fit in size_t. */
int ds_size_mul3(uint64_t a, uint64_t b, uint64_t c, size_t *out)
{
    if (a > SIZE_MAX || b > SIZE_MAX || c > SIZE_MAX)
        return -1;
    size_t ab = (size_t)a * (size_t)b;
    if (b != 0 && (size_t)a > SIZE_MAX / (size_t)b)
        return -1;
    if (c != 0 && ab > SIZE_MAX / (size_t)c)
        return -1;
    *out = ab * (size_t)c;
    return 0;
}

/* realloc to rows * row_bytes (at least one byte, so an empty buffer is still a valid
 * pointer); NULL on overflow or failure, p untouched. */
void *ds_realloc_rows(void *p, size_t rows, size_t row_bytes)
{
    size_t bytes;
    if (ds_size_mul3(rows, row_bytes, 1, &bytes))
        return NULL;
    return realloc(p, bytes ? bytes : 1);
}

void ds_names_free(char **names, int k)
{
    if (!names)
        return;
    for (int c = 0; c < k; c++)
        free(names[c]);
    free(names);
}

/* ---- Task names ----------------------------------------------------------------------- */

#define DS_NAME(v, name) name,
static const char *const task_names[] = {DS_TASK_NAMES(DS_NAME)};

const char *ds_task_name(int task)
{
    return task >= 0 && task < DS_TASK_COUNT ? task_names[task] : NULL;
}

int ds_task_find(const char *name)
{
    for (int i = 0; name && i < DS_TASK_COUNT; i++)
        if (strcmp(task_names[i], name) == 0)
            return i;
    return -1;
}

/* ---- The dataset object --------------------------------------------------------------- */

static int check_shape(int64_t n, int d, int dmin, ds_task task, int nclasses, int tdim,
                       pst_err *err)
{
    if (n < 0 || d < dmin)
        return pst_err_set(err, PST_ERR_ARG, "dataset shape (%lld, %d): need n >= 0, d >= %d",
                           (long long)n, d, dmin);
    if (task == DS_TASK_CLASSIFY) {
        if (nclasses < 1)
            return pst_err_set(err, PST_ERR_ARG, "classification dataset with %d classes",
                               nclasses);
    } else if (task == DS_TASK_REGRESS) {
        if (tdim < 1)
            return pst_err_set(err, PST_ERR_ARG, "regression dataset with target dim %d", tdim);
    } else {
        return pst_err_set(err, PST_ERR_ARG, "unknown dataset task %d", (int)task);
    }
    size_t bytes;
    if (ds_size_mul3((uint64_t)n, (uint64_t)d, sizeof(float), &bytes) ||
        ds_size_mul3((uint64_t)n, task == DS_TASK_REGRESS ? (uint64_t)tdim : 1, sizeof(float),
                     &bytes))
        return pst_err_set(err, PST_ERR_NOMEM, "dataset of %lld x %d floats overflows size_t",
                           (long long)n, d);
    return PST_OK;
}

/* Wraps buffers the caller allocated for exactly this shape; on success the dataset owns
 * x, label and target, on failure the caller still does. */
ds_dataset *ds_adopt(int64_t n, int d, ds_task task, int nclasses, int tdim, float *x,
                     int32_t *label, float *target, pst_err *err)
{
    return ds_adopt_d0(n, d, task, nclasses, tdim, x, label, target, err);
}

ds_dataset *ds_adopt_d0(int64_t n, int d, ds_task task, int nclasses, int tdim, float *x,
                        int32_t *label, float *target, pst_err *err)
{
    ds_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        pst_err_set(err, PST_ERR_NOMEM, "dataset: out of memory");
        return NULL;
    }
    ds->n = n;
    ds->d = d;
    ds->task = task;
    ds->nclasses = task == DS_TASK_CLASSIFY ? nclasses : 0;
    ds->tdim = task == DS_TASK_REGRESS ? tdim : 0;
    ds->x = x;
    ds->label = label;
    ds->target = target;
    return ds;
}

ds_dataset *ds_create(int64_t n, int d, ds_task task, int nclasses, int tdim, pst_err *err)
{
    return ds_create_d0(n, d, 1, task, nclasses, tdim, err);
}

ds_dataset *ds_create_d0(int64_t n, int d, int dmin, ds_task task, int nclasses, int tdim,
                         pst_err *err)
{
    if (check_shape(n, d, dmin, task, nclasses, tdim, err))
        return NULL;
    /* Sizes are checked above; calloc of at least one element keeps pointers non-NULL. */
    size_t nx = (size_t)n * (size_t)d;
    float *x = calloc(nx ? nx : 1, sizeof *x);
    int32_t *label = NULL;
    float *target = NULL;
    if (task == DS_TASK_CLASSIFY)
        label = calloc(n ? (size_t)n : 1, sizeof *label);
    else
        target = calloc(n ? (size_t)n * (size_t)tdim : 1, sizeof *target);
    ds_dataset *ds = NULL;
    if (!x || (!label && !target)) {
        pst_err_set(err, PST_ERR_NOMEM, "dataset of %lld x %d floats: out of memory", (long long)n,
                    d);
        goto cleanup;
    }
    ds = ds_adopt_d0(n, d, task, nclasses, tdim, x, label, target, err);
cleanup:
    if (!ds) {
        free(x);
        free(label);
        free(target);
    }
    return ds;
}

void ds_destroy(ds_dataset *ds)
{
    if (!ds)
        return;
    free(ds->x);
    free(ds->label);
    free(ds->target);
    ds_names_free(ds->class_names, ds->nclasses);
    ds_sparse_destroy(ds->sp);
    free(ds);
}

int64_t ds_count(const ds_dataset *ds) { return ds->n; }
int ds_dim(const ds_dataset *ds) { return ds->d; }

int ds_image_shape(const ds_dataset *ds, int chw[3])
{
    if (ds->image[0] < 1 || (int64_t)ds->image[0] * ds->image[1] * ds->image[2] != ds->d)
        return 0;
    memcpy(chw, ds->image, sizeof ds->image);
    return 1;
}
ds_task ds_task_of(const ds_dataset *ds) { return ds->task; }
int ds_nclasses(const ds_dataset *ds) { return ds->nclasses; }
int ds_target_dim(const ds_dataset *ds) { return ds->tdim; }
float *ds_x(ds_dataset *ds) { return ds->x; }
const float *ds_x_const(const ds_dataset *ds) { return ds->x; }
int32_t *ds_labels(ds_dataset *ds) { return ds->label; }
const int32_t *ds_labels_const(const ds_dataset *ds) { return ds->label; }
float *ds_targets(ds_dataset *ds) { return ds->target; }
const float *ds_targets_const(const ds_dataset *ds) { return ds->target; }

const char *ds_class_name(const ds_dataset *ds, int c)
{
    if (!ds || !ds->class_names || c < 0 || c >= ds->nclasses)
        return NULL;
    return ds->class_names[c];
}

int ds_raw_range(const ds_dataset *ds, float *lo, float *hi)
{
    if (!ds || !ds->has_range)
        return -1;
    if (lo)
        *lo = ds->raw_lo;
    if (hi)
        *hi = ds->raw_hi;
    return 0;
}
