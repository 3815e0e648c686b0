/* job/job.h -- the job description: what to train, on what, how.
 *
 * A job is a YAML file parsed with libcyaml against the schema in job/schema.c; every key of
 * the file can also be set from the command line as a dotted path
 * ("--optimizer.lr 0.01", "--model.layers.1.units=64"); see cfg_override. Unknown keys,
 * wrong types and out-of-range values are errors that name the key (and the file and
 * line when libcyaml reports one).
 *
 * Ownership: a cfg_job returned by cfg_job_load_string or cfg_job_load_file owns its strings
 * and layer array; free it with cfg_job_free. */
#ifndef PSTRAIN_JOB_JOB_H
#define PSTRAIN_JOB_JOB_H

#include <stdint.h>
#include <stdio.h>

#include "base/err.h"
#include "core/layer.h"
#include "core/optim.h"
#include "core/sptable.h"
#include "data/augment.h"
#include "data/data.h"
#include "data/sparse.h"

typedef enum {
    CFG_FMT_IDX = 0,
    CFG_FMT_CSV,
    CFG_FMT_LIBSVM,
    CFG_FMT_TEXT_DIR,
    CFG_FMT_TEXT
} cfg_format;
typedef enum { CFG_HEADER_AUTO = 0, CFG_HEADER_YES, CFG_HEADER_NO } cfg_header;

/* data.image: IDX images adapted to the size a model takes (data/data.h ds_image_fit).
 * height = width = 0: as in the file (the key is then not printed, so the fingerprints
 * of jobs without it are unchanged). */
typedef enum { CFG_FIT_PAD = 0, CFG_FIT_RESIZE } cfg_image_fit;
typedef struct {
    int height, width;
    cfg_image_fit fit; /* pad (default) or resize */
} cfg_image;

typedef struct {
    cfg_format format;
    char *train;        /* features (IDX images) or the whole CSV/libsvm file */
    char *train_labels; /* IDX labels file; unused for CSV/libsvm */
    char *test;         /* optional held-out test set, same format */
    char *test_labels;
    ds_task task;            /* data/data.h's tasks and names */
    int num_classes;         /* 0: from the data */
    char *label;             /* CSV label column by header name, or NULL */
    int label_index;         /* CSV label column by index when label is NULL; -1 = last */
    cfg_header header;       /* CSV */
    char *delimiter;         /* CSV, one character; NULL = "," */
    int dim;                 /* libsvm feature count; 0 = from the data */
    double validation_split; /* fraction of train held out for validation, [0, 1) */
    ds_scale_kind scale;     /* data/data.h's scalings and names */
    /* Fine-tuning subsets (worker/dataprep.c): */
    int *classes; /* keep only these class ids, relabelled 0..k-1 in this order;
                                NULL = every class (train, validation and test alike) */
    unsigned classes_count;
    int limit; /* keep N training samples (seeded, stratified) after the split; 0 = all */
    /* Sparse features (data/sparse.h; docs/job-file.md "Sparse and hashed features"): */
    int sparse;         /* libsvm: keep rows sparse (D = 0, 64-bit ids); bool */
    char **categorical; /* csv: hashed columns by header name */
    unsigned categorical_count;
    char **crosses; /* csv: "a x b" hashed pairs of columns */
    unsigned crosses_count;
    int hash_bits;                /* ids < 2^hash_bits (libsvm sparse: a limit; hashes: a mask);
                           0 = 64-bit ids */
    uint64_t hash_seed;           /* of every feature hash */
    int ngrams;                   /* text_dir: word n-grams up to this n, >= 1 */
    ds_text_value text_value;     /* text_dir: count | tf | binary */
    ds_text_headers text_headers; /* text_dir: all | subject | none (mail headers read) */
    char *text_suffix;            /* text_dir: only files ending so; NULL = every file */
    char **text_classes;          /* text_dir: "name=folder folder ..."; none = each subfolder */
    unsigned text_classes_count;
    /* format text (data/textwin.h): windows of context + 1 token ids */
    char *tokenizer; /* folder of encoder.json + vocab.bpe or vocab.json + merges.txt;
                        NULL = byte-level (256 ids) */
    int context;     /* tokens a window feeds the model (T); >= 1 for format text */
    cfg_image image; /* IDX images adapted to this size; 0 x 0 = as in the file */
    /* data.augment: random transforms of each training batch's images in the worker
     * (data/augment.h); all 0 = none, and then not in the fingerprint. */
    ds_aug_config augment;
} cfg_data;

/* model.gpt2: a GPT-2 configuration (core/gpt2.h) that the job expands into model.layers
 * (ml_gpt2_spec, context data.context) instead of a layer list; all 0: not set. */
typedef struct {
    int n_layer, n_head, n_embd, n_positions, vocab_size;
    double dropout; /* embd/attn/resid_pdrop alike (core/gpt2.h); 0: none */
} cfg_gpt2;

/* model.lora: LoRA adapters (core/layers/lora.h) of rank r on the projections of the
 * targets ("attn": attention's c_attn and c_proj; "mlp": every token_dense, GPT-2's c_fc
 * and c_proj; none listed: both), scaled by alpha / r. The job writes them into the
 * layers' lora_rank / lora_alpha keys and freezes every layer: only adapters train.
 * rank 0: no adapters. */
typedef struct {
    int rank;
    double alpha;
    char **targets;
    unsigned targets_count;
} cfg_lora;

/* model: the layers (core/layer.h; read with the job's layer registry), loss and init,
 * and where fine-tuning takes its initial weights from. */
typedef struct {
    ml_model_spec spec;     /* layers, loss, init; strings malloc'd, freed by cfg_job_free */
    cfg_gpt2 gpt2;          /* set: spec.layers are its expansion */
    cfg_lora lora;          /* rank >= 1: adapters written into spec.layers, base frozen */
    char *init_from;        /* fine-tuning: initial weights by name from this checkpoint, or NULL */
    int keep_zeros;         /* bool: init_from's zero weights stay 0 (a pruned model's mask) */
    const ml_registry *reg; /* the layer types the job was read with (borrowed) */
    int external;           /* bool: the workers' own model (cfg_job_is_library) */
} cfg_model;

/* After every epoch the loop judges the model (wk_trainer_judge on the validation set, or
 * the epoch's training figures): a loss 100x the first batch's, or a model no better than a
 * constant, is a warning (warn), or ends the run with PST_ERR_DIVERGED (stop; exit 5). */
typedef enum { CFG_DIV_WARN = 0, CFG_DIV_STOP } cfg_divergence;

typedef struct {
    int batch_size;
    int epochs;
    int threads;       /* BLAS threads for this process */
    int shuffle;       /* bool */
    int log_every;     /* every N steps: a progress line when not a terminal and a steps.csv
                        record (worker/report.h); 0 = per epoch only */
    int on_divergence; /* cfg_divergence: what an epoch judged diverged or at chance does */
    int accumulate;    /* micro-batches of batch_size per update: the gradient of one step
                          is the mean over accumulate * batch_size samples */
} cfg_train;

typedef struct {
    char *dir; /* run directory: metrics.csv, metrics.jsonl, ... */
} cfg_output;

/* How servers order updates and answer pulls (see ps/server.c):
 *   bsp  every step's gradients of all live workers are averaged, then applied once;
 *   ssp  pushes apply at once; a pull at clock c waits until the slowest live worker has
 *        reached c - staleness;
 *   asp  pushes apply at once; pulls never wait. */
typedef enum { CFG_CONS_BSP = 0, CFG_CONS_SSP, CFG_CONS_ASP } cfg_consistency;

/* A gradient chunk holding NaN or Inf (counted either way):
 *   reject  the server refuses the push with an error; the worker stops with it;
 *   skip    the server drops that worker's step on this shard (bsp: it does not count in
 *           the mean) and the worker goes on. */
typedef enum { CFG_NONFINITE_REJECT = 0, CFG_NONFINITE_SKIP } cfg_nonfinite;

/* How gradients (PUSH) and weights (PULL_REPLY) travel (worker/compress.h):
 *   none  float32, zero-copy;   fp16, bf16  half the bytes both ways;
 *   topk  the largest topk_ratio of each gradient chunk with error feedback (the rest
 *         is kept on the worker and added to the next step's), weights as float32. */
typedef enum { CFG_COMP_NONE = 0, CFG_COMP_FP16, CFG_COMP_BF16, CFG_COMP_TOPK } cfg_compression;

typedef struct {
    int servers; /* parameter servers */
    int workers; /* workers */
    cfg_consistency consistency;
    int staleness; /* ssp: clocks a worker may run ahead of the slowest */
    int pipeline;  /* ssp/asp: compute step c+1 while step c's pull is in
                                    flight (one more step of staleness) */
    int timeout_s; /* every network wait gives up after this long */
    /* Fault tolerance (docs/fault-tolerance.md). Every process sends the coordinator a
     * heartbeat every heartbeat_ms; one silent for heartbeat_timeout_s is lost: a worker
     * leaves the job (the others go on without it), a server or the coordinator ends it. */
    int heartbeat_ms;
    int heartbeat_timeout_s;
    int max_restarts;        /* pstrain local / cluster script: restarts of a failed
                                    worker (same rank; it rejoins), per worker */
    cfg_nonfinite nonfinite; /* a pushed gradient with NaN/Inf: reject | skip */
    int metrics_port;        /* Prometheus /metrics: coordinator on this port, server r
                                    on metrics_port + 1 + r; 0 = off (docs/observability.md) */
    /* ssp/asp: the servers' corrections for stale gradients (ps/async.h); no effect under
     * bsp. */
    int staleness_lr;            /* bool: lr / (1 + staleness) */
    float delay_compensation;    /* lambda0 of DC-ASGD-a; 0 = off */
    int async_momentum;          /* bool: explicit momentum less the workers' implicit one
                                 (default true: bench/run_async_quality.sh) */
    cfg_compression compression; /* the wire's floats: none | fp16 | bf16 | topk */
    float topk_ratio;            /* topk: share of each chunk's entries sent, (0, 1] */
} cfg_cluster;

/* Checkpoints and resume (docs/job-file.md, "Checkpoints and resume" in README.md). */
typedef struct {
    int enabled;          /* bool: write checkpoints (single process: every epoch's end, when
                             stopped, and every_*; distributed: servers at the end and every_*) */
    char *dir;            /* NULL: <output.dir>/checkpoints */
    int every_steps;      /* also every N steps (distributed: clocks of worker 0); 0 = off */
    double every_seconds; /* also every S seconds of training; 0 = off */
    int keep;             /* newest checkpoints kept, >= 1 */
    char *resume;         /* continue from the newest complete checkpoint in this folder */
} cfg_checkpoint;

/* CURVE encryption and authentication of every connection (docs/security.md). Off while
 * every path is unset; on, each process uses what its role needs: listening processes
 * (coordinator, servers) server_key and allow, connecting ones (servers, workers)
 * server_public and client_key (default: server_key; servers always connect with
 * server_key, the key class that may act as a server). Paths, like data paths, are
 * relative to the job file's folder when written in it. */
typedef struct {
    char *server_key;    /* secret key file of the listening side (NAME.key) */
    char *server_public; /* its public key file (NAME.pub) */
    char *client_key;    /* a worker's secret key as a client; NULL: server_key */
    char *allow;         /* client public keys accepted: a folder of *.pub or a file */
} cfg_security;

/* The embedding tables of a model's sparse layers (core/sptable.h): how each process that
 * holds them (pstrain train; every server, its keys' share) updates and bounds them. The
 * row width and init scale are the layers' (dim, init_scale). */
typedef struct {
    opt_config opt;   /* sgd | adagrad | adam | ftrl and their constants (lr: ftrl's alpha) */
    int init;         /* spt_init_kind: new rows uniform(-s, s), normal(0, s^2) or zeros */
    int admit_after;  /* a key gets a row at its N-th occurrence; 0, 1: at once */
    int expire_steps; /* rows untouched for T steps are dropped; 0 = never */
    int64_t max_rows; /* rows per table and process; 0 = no budget */
} cfg_sparse;

typedef struct {
    char *name;
    uint64_t seed;
    cfg_data data;
    cfg_model model;
    opt_config optimizer;
    cfg_sparse sparse;
    cfg_train train;
    cfg_output output;
    cfg_cluster cluster;
    cfg_checkpoint checkpoint;
    cfg_security security;
} cfg_job;

/* The configuration of embedding table `table` (a model's sparse layers' table name) of
 * row width dim and init scale init_scale (the layers' keys) under this job: the sparse:
 * section's rule and bounds, and a seed drawn from the job's seed and the table's name, so
 * that every process of the job (and every rerun) makes the same rows. */
void cfg_sparse_table(const cfg_job *job, const char *table, int dim, float init_scale,
                      spt_config *out);
/* 1 when a layer of the model reads the sparse features (an embedding table's reader). */
int cfg_model_is_sparse(const ml_model_spec *spec);

/* Parses YAML text; source names it in errors (a path, or "<default job>"). Missing keys
 * take their defaults (see cfg_job_print or docs/job-file.md). The result is validated
 * (cfg_job_check). */
int cfg_job_load_string(cfg_job **out, const char *yaml, size_t len, const char *source,
                        pst_err *err);
int cfg_job_load_file(cfg_job **out, const char *path, pst_err *err);
/* The same with the layer types of reg (NULL: ml_registry_builtin()), which must outlive
 * the job. */
int cfg_job_load_string_reg(cfg_job **out, const ml_registry *reg, const char *yaml, size_t len,
                            const char *source, pst_err *err);
int cfg_job_load_file_reg(cfg_job **out, const ml_registry *reg, const char *path, pst_err *err);
void cfg_job_free(cfg_job *job);

/* Sets one key from text: path "optimizer.lr", "model.layers.0.units", value "0.01".
 * The value is parsed as the key's type (int, float, bool, enum name, string); an
 * unknown path, a bad value or an index past the end is an error naming the path.
 * Call cfg_job_check after the last override. */
int cfg_override(cfg_job *job, const char *path, const char *value, pst_err *err);

/* Validates ranges and cross-field rules (e.g. softmax output with cross-entropy,
 * IDX needs train_labels). */
int cfg_job_check(const cfg_job *job, pst_err *err);

/* A job for library workers (include/pstrain/pstrain.h): `model: {external: true}`. Its
 * workers are programs that bring their own model and declare its tensors; the coordinator
 * and servers learn the model's size from their HELLO, as always. Such a job names no
 * layers and needs no data (cfg_job_check refuses layers or data.train), and pstrain's own
 * workers refuse it (wk_data_load_log). */
int cfg_job_is_library(const cfg_job *job);

/* Writes the effective job as YAML (round-trips through cfg_job_load_string). */
int cfg_job_print(const cfg_job *job, FILE *f, pst_err *err);

const char *cfg_consistency_name(cfg_consistency c);
const char *cfg_compression_name(cfg_compression c); /* "none", "fp16", "bf16", "topk" */
const char *cfg_format_name(cfg_format f);           /* data.format's: "idx", "csv", ... */

/* 64-bit fingerprint (FNV-1a) of the effective job as cfg_job_print writes it, without
 * the data paths, output folder and thread count, so processes started separately can
 * check that they train the same model the same way. */
uint64_t cfg_job_hash(const cfg_job *job);

/* Where the job's checkpoints go: checkpoint.dir, by default <output.dir>/checkpoints. */
void cfg_checkpoint_dir(const cfg_job *job, char *buf, size_t cap);

#endif
