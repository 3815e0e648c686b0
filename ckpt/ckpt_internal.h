/* ckpt/ckpt_internal.h -- the safetensors container (safetensors.c) as the other files of
 * ckpt/ use it; included by ckpt/ alone.
 *
 * Reading is three passes over a file held whole in memory: the container (header length,
 * JSON, tensor entries, offsets, checksums, finite values: ckpt_st_open), then the metadata
 * (the model and data descriptions: model.c), then the match of tensors against the
 * model's segments (ckpt_st_claim). Only when all three pass are weights copied, so a bad
 * file never half-loads a model. */
#ifndef PSTRAIN_CKPT_CKPT_INTERNAL_H
#define PSTRAIN_CKPT_CKPT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "ckpt.h"

#define MAX_DIMS 8
#define PREP_SHIFT "preprocess.shift"
#define PREP_MUL "preprocess.mul"
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- Writing --------------------------------------------------------------------------- */

/* Element types of the container. Model and state files hold F32 alone (their readers
* refuse the others); sparse tables add U64 keys, U32 stamps and U8 counters; Hugging
 * Face files (hf.c) may hold F16 and BF16 weights (read as floats) and BOOL buffers;
 * exported (compressed) model files, marked by "pstrain.quant" in the metadata, F16 and I8
 * weights (ckpt/quant.h), which the reader widens back to F32 before anything else sees
 * them. */
typedef enum {
    CKPT_F32 = 0,
    CKPT_U64,
    CKPT_U32,
    CKPT_U8,
    CKPT_F16,
    CKPT_BF16,
    CKPT_BOOL,
    CKPT_I8
} ckpt_dtype;
#define CKPT_DTYPE_BIT(t) (1u << (t))

/* safetensors' name of t ("F32", "U64", ...) and its size in bytes (dtype.c). */
const char *ckpt_dtype_name(ckpt_dtype t);
size_t ckpt_dtype_size(ckpt_dtype t);
/* The dtype named name among the CKPT_DTYPE_BITs of mask, or -1. */
int ckpt_dtype_find(const char *name, unsigned mask);
/* "F32 only", "F32, U64, U32 and U8 only": mask's dtypes, for a refusal. */
void ckpt_dtype_list(unsigned mask, char *buf, size_t n);
/* Element j of the bytes p (maybe unaligned) of an F32, F16 or BF16 tensor, as a float. */
float ckpt_float_at(ckpt_dtype t, const unsigned char *p, size_t j);

/* One tensor to write: name, shape, bytes. */
typedef struct {
    const char *name;
    int ndim;
    double shape[2];
    const void *p;
    size_t n;         /* elements */
    ckpt_dtype dtype; /* F32 when left out of an initialiser */
} out_tensor;

/* One more metadata entry (state files' "state.*" keys). */
typedef struct {
    const char *key, *val;
} meta_pair;

/* The header JSON, its CRC field still "0000000000": "__metadata__" with format, producer,
 * pstrain.version, pstrain.model and pstrain.data (each when not NULL), extra[0..nextra)
 * as they are and crc32.<tensor> of every tensor, then one entry per tensor. NULL when out
 * of memory; free with cJSON_free. */
char *ckpt_st_header_json(const out_tensor *ts, int nt, const char *model, const char *data,
                          const meta_pair *extra, int nextra);
/* Writes the header json (its CRC field "0000000000") and the tensors ts[0..nt) to path
 * atomically: a temporary file in the same folder, fsync, rename, fsync of the folder. */
int ckpt_st_write(const char *path, const char *json, const out_tensor *ts, int nt, pst_err *err);
/* The first non-finite value of a float array, or -1. */
int64_t ckpt_first_nonfinite(const float *p, size_t n);

/* ---- Reading --------------------------------------------------------------------------- */

typedef struct {
    const char *name; /* borrowed from the parsed header */
    int ndim;
    int64_t shape[MAX_DIMS];
    uint64_t begin, end; /* bytes of the data area */
    const char *crc;     /* value of "crc32.<name>", or NULL */
    ckpt_dtype dtype;
    int used; /* claimed by a model segment or a preprocess slot */
} st_tensor;

typedef struct {
    const char *path;
    unsigned char *buf; /* the whole file */
    size_t size;
    cJSON *root;
    const cJSON *meta; /* "__metadata__" or NULL */
    const unsigned char *data;
    size_t data_len;
    st_tensor *t;
    int nt;
    unsigned dtypes;     /* the CKPT_DTYPE_BITs the opener accepts */
    int quant;           /* "pstrain.quant" in the metadata: F16 and I8 accepted, then widened */
    unsigned char *wide; /* the widened F32 data area (f->data points into it), or NULL */
} st_file;

/* Reads the whole file at path (borrowed for messages) and validates the container: header
 * length and JSON, every tensor entry, that the tensors tile the data, the checksums and
 * that every value is finite. On failure f is empty (nothing to ckpt_st_fini). */
int ckpt_st_open(st_file *f, const char *path, pst_err *err);
void ckpt_st_fini(st_file *f);
/* An exported file's F16 and I8 tensors as F32 (ckpt/quant.c, called by ckpt_st_open once the
 * container is validated): F16 values converted; an I8 tensor "<w>" shaped (R, C) times its
 * F32 "<w>.scale" shaped (R), row by row, the scale tensor then dropped from the list. The
 * results must be finite. Afterwards f holds F32 tensors alone, as an fp32 file would. */
int ckpt_st_widen(st_file *f, pst_err *err);
/* ckpt_st_open accepting every ckpt_dtype (sparse table files); only F32 values are
 * checked to be finite. The callers of ckpt_st_claim see F32 tensors alone. */
int ckpt_st_open_any(st_file *f, const char *path, pst_err *err);
/* ckpt_st_open accepting F32, F16, BF16 and BOOL (Hugging Face files: hf.c); F16 and
 * BF16 values are checked to be finite too. */
int ckpt_st_open_hf(st_file *f, const char *path, pst_err *err);
/* The n elements of the F32, F16 or BF16 tensor t as floats into dst (n). */
void ckpt_st_read_floats(const st_file *f, const st_tensor *t, float *dst, size_t n);
/* The metadata value of key (every one is a string), or NULL. */
const char *ckpt_st_meta_str(const st_file *f, const char *key);
st_tensor *ckpt_st_find_tensor(st_file *f, const char *name);
/* Claims the F32 tensor `name` of the given shape; error when missing, of another dtype or
 * shaped otherwise. ckpt_st_claim_as: of dtype dt. */
int ckpt_st_claim_as(st_file *f, const char *name, ckpt_dtype dt, const int64_t *shape, int ndim,
                     st_tensor **out, pst_err *err);
int ckpt_st_claim(st_file *f, const char *name, const int64_t *shape, int ndim, st_tensor **out,
                  pst_err *err);
/* 1 when v is a JSON number holding an integer in [0, max]. */
int ckpt_json_is_uint(const cJSON *v, double max);
/* Adds item (just created, NULL when that ran out of memory) to the object parent under
 * key, or to the array parent when key is NULL. 0 when it is there; else -1 and item is
 * deleted, so that a JSON writer never leaks it or writes a header with the key missing.
 * cJSON's adds fail only for lack of memory (the key's copy). */
int ckpt_json_put(cJSON *parent, const char *key, cJSON *item);
/* Refuses a key of obj that appears twice (JSON allows it, cJSON keeps both), so that two
 * readers cannot see two different files; `what` names obj in the message. */
int ckpt_json_unique_keys(const st_file *f, const cJSON *obj, const char *what, pst_err *err);
/* Messages quote names from the file, which may hold any character once JSON escapes are
 * decoded ("a\nb"): replaces control bytes in err's message so that it stays one line, and
 * returns rc. */
int ckpt_one_line(pst_err *err, int rc);

/* ---- The model spec as pstrain.model (spec.c) ---------------------------------------- */

/* {"input_dim":D,["input_shape":[C,H,W],]"layers":[...],"loss":...} for spec and its
 * input shape; NULL when out of memory (cJSON_free). */
char *ckpt_model_json(const ml_model_spec *spec, const ml_shape *in);
/* f's pstrain.model into spec (layer types from reg; NULL: the built-in registry), *in_dim
 * and *in_shape (NULL: not wanted), checked as a spec; the caller fini's spec on success. */
int ckpt_parse_model_meta(const st_file *f, const ml_registry *reg, ml_model_spec *spec,
                          int *in_dim, ml_shape *in_shape, pst_err *err);
/* Refuses keys of obj outside allowed[0..n) and repeated keys; `what` names obj. */
int ckpt_only_keys(const st_file *f, const char *what, const cJSON *obj, const char *const *allowed,
                   int n, pst_err *err);

/* ---- Hugging Face GPT-2 files (hf.c) for init_from.c ---------------------------------- */

/* The tensor of f holding the model segment seg: one named seg, else one named as HF's
 * GPT-2 names it (ml_gpt2_hf_name), with or without "transformer."; NULL when none. */
st_tensor *ckpt_hf_find(st_file *f, const char *seg);
/* Claims t for sg: an F32, F16 or BF16 tensor shaped as HF keeps sg, else PST_ERR_DATA
 * naming the tensor, its shape and the one `needs` ("config.json", "the model") needs. */
int ckpt_hf_claim(st_file *f, st_tensor *t, const ml_segment *sg, const char *needs, pst_err *err);
/* 1 for a tensor of an HF file that is no parameter (attn.bias and attn.masked_bias
 * buffers, the tied lm_head.weight). */
int ckpt_hf_ignorable(const char *name);
/* 1 when f holds a block tensor named as HF's GPT-2 names it (h.0.attn.c_attn.weight, with
 * or without "transformer."): HF weights given as a file instead of their folder. */
int ckpt_hf_weights_file(const st_file *f);
/* Opens dir's weights (ckpt_st_open_hf, unique names) after checking dir's config.json and
 * that the attention layers of m have its n_head. */
int ckpt_hf_open_for(st_file *f, char *path, size_t cap, const char *dir, const ml_model *m,
                     pst_err *err);

/* ---- Models (model.c) for hf.c ------------------------------------------------------- */

/* A model built from another description as a ckpt_model: takes spec's contents (spec is
 * left empty) and net; the task a pstrain checkpoint of that model has (regress: a language
 * model's (N, T) next-id targets), the identity scaler. On failure both are freed. */
int ckpt_model_wrap(ml_model_spec *spec, ml_model *net, ckpt_model **out, pst_err *err);
/* The model spec (pstrain.model) and input width of the pstrain checkpoint at path; the
 * caller fini's *spec. */
int ckpt_read_spec(const char *path, const ml_registry *reg, ml_model_spec *spec, int *in_dim,
                   pst_err *err);

/* LoRA (ckpt/lora.c): resets every layer's lora_rank to 0 (the spec of the merged model)
 * and returns how many layers had adapters; ckpt_lora_merge fills base (built from the
 * stripped spec) with lo's base tensors, W + (alpha / r) A B for each adapted W. */
int ckpt_lora_strip(ml_model_spec *s);
int ckpt_lora_merge(ml_model *base, ml_model *lo, pst_err *err);

#endif
