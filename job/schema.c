/* job/schema.c -- the job file's schema: the libcyaml tables, enum names, and typed
 * access to the fields they describe (raw loads and stores by size, one strict scalar
 * parser shared by the file scan and the overrides).
 *
 * Keys of a job file (every one optional; cfg_job_check then demands what a run needs):
 *
 *   name: string                    "pstrain-job"
 *   seed: unsigned integer          42
 *   data:
 *     format: idx|csv|libsvm|text_dir|text  idx
 *     train: path                   (required)
 *     train_labels: path            (required for idx)
 *     test: path                    none
 *     test_labels: path             (required for idx when test is set)
 *     task: classify|regress        classify
 *     num_classes: int              0 = from the data
 *     label: CSV column name        none
 *     label_index: int              -1 = last column (used when label is not set)
 *     header: auto|yes|no           auto
 *     delimiter: one character      none = ","
 *     dim: int                      0 = from the data (libsvm)
 *     validation_split: [0, 1)      0
 *     scale: none|minmax|standardize  none
 *     classes: [int, ...]           none = all (fine-tuning: keep these, relabelled 0..k-1)
 *     limit: int >= 0               0 = all training samples after the split
 *     sparse: bool                  false (libsvm: rows kept sparse, D = 0)
 *     categorical: [column, ...]    none (csv: hashed columns, by header name)
 *     crosses: ["a x b", ...]       none (csv: hashed pairs of columns)
 *     hash_bits: 0..63              0 = 64-bit ids
 *     hash_seed: unsigned integer   0
 *     ngrams: int >= 1              1 (text_dir)
 *     text_value: count|tf|binary   count (text_dir)
 *     text_headers: all|subject|none  all (text_dir)
 *     text_suffix: string           none = every file (text_dir)
 *     text_classes: ["name=dir dir", ...]  none = one class per subfolder (text_dir)
 *     tokenizer: path (folder)      none = byte-level (text: GPT-2 BPE files in the folder)
 *     context: int                  0; format text needs >= 1 (a window is context + 1 ids)
 *     image: {height, width, fit: pad|resize}   none = as in the file (IDX)
 *     augment: {shift: int, flip: [0, 1], rotate: degrees, noise: std}   none (IDX images,
 *                                   training batches only: data/augment.h)
 *   model:
 *     layers:                       (at least one dense layer)
 *       - type: dense|activation    dense
 *         units: int >= 1           (dense)
 *         activation: linear|relu|sigmoid|tanh|softmax   linear
 *         name: string              none = "dense_<k>" / "act_<k>" chosen by the model
 *         trainable: bool           true (false: frozen)
 *         lr_mult: float >= 0       1 (0 freezes)
 *     loss: categorical_crossentropy|binary_crossentropy|mse   categorical_crossentropy
 *     init: auto|glorot|he          auto
 *     init_from: path               none (fine-tuning: weights by name from a checkpoint)
 *     lora: {rank, alpha, targets: [attn, mlp]}  rank 0 (LoRA adapters; the base frozen)
 *     keep_zeros: bool              false (init_from's zero weights stay 0: pruning's mask,
 *                                   on the servers in distributed jobs)
 *     gpt2: {n_layer, n_head, n_embd, n_positions, vocab_size, dropout}  none (instead of layers:
 *                                   core/gpt2.h's layers, loss sequence_crossentropy)
 *     external: bool                false (true: the workers are programs using libpstrain,
 *                                   which declare the model's tensors; no layers, no data)
 *   optimizer:                      every key absent from the file takes
 *     name: sgd|momentum|nesterov|adagrad|rmsprop|adam|adamw    opt_config_default(name)
 *     lr, momentum, beta1, beta2, rho, eps, weight_decay, clip_norm: float
 *     schedule: constant|step|cosine
 *     warmup_steps, step_size, total_steps: int;  gamma, min_lr: float
 *       (the schedule's fields sit flat in optimizer:, not under a schedule: mapping)
 *   train:
 *     batch_size: int >= 1          32
 *     epochs: int >= 1              1
 *     threads: int >= 1             1
 *     shuffle: bool                 true
 *     log_every: int >= 0           0 = once per epoch
 *     on_divergence: warn|stop      warn (stop: exit 5 after the epoch judged diverged)
 *     accumulate: int >= 1          1 (micro-batches of batch_size per update)
 *   output:
 *     dir: path                     "runs/<name>"
 *   cluster: servers, workers, consistency, staleness, pipeline, timeout_s, heartbeat_ms,
 *            heartbeat_timeout_s, max_restarts, nonfinite, metrics_port, staleness_lr,
 *            delay_compensation, async_momentum, compression, topk_ratio (job.h)
 *   checkpoint:
 *     enabled: bool                 true
 *     dir: path                     none = "<output.dir>/checkpoints"
 *     every_steps: int >= 0         0 = only at epoch ends (distributed: at the end)
 *     every_seconds: float >= 0     0 = off
 *     keep: int >= 1                2
 *     resume: path                  none (a folder of checkpoints to continue from)
 *   security:                       (CURVE; all unset = off; docs/security.md)
 *     server_key, server_public, client_key, allow: path   none
 *
 * Strings: "", "~" and "null" (quoted or not) mean "not set" (libcyaml's
 * CYAML_FLAG_POINTER_NULL_STR), so a path can be unset from the command line with "".
 * Booleans: true/false, yes/no, on/off, 1/0 in any case. Integers: decimal, 0x hex (and, as
 * in C and YAML 1.1, a leading 0 means octal). Floats: anything strtod reads in full that
 * is finite and in range for the field's type.
 */
#include "job_internal.h"

#include "core/sptable.h"

#include <assert.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Schema ------------------------------------------------------------------------ */

#define CFG_OPT (CYAML_FLAG_OPTIONAL)
#define CFG_OPT_ENUM (CYAML_FLAG_OPTIONAL | CYAML_FLAG_STRICT)
#define CFG_OPT_FLOAT (CYAML_FLAG_OPTIONAL | CYAML_FLAG_STRICT)
#define CFG_OPT_STR (CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER_NULL_STR)
#define CFG_STR(key, type, member)                                                                 \
    CYAML_FIELD_STRING_PTR(key, CFG_OPT_STR, type, member, 0, CYAML_UNLIMITED)
#define CFG_ENUM(key, type, member, table)                                                         \
    CYAML_FIELD_ENUM(key, CFG_OPT_ENUM, type, member, table, CYAML_ARRAY_LEN(table))

static const cyaml_strval_t format_names[] = {{"idx", CFG_FMT_IDX},
                                              {"csv", CFG_FMT_CSV},
                                              {"libsvm", CFG_FMT_LIBSVM},
                                              {"text_dir", CFG_FMT_TEXT_DIR},
                                              {"text", CFG_FMT_TEXT}};
static const cyaml_strval_t nonfinite_names[] = {{"reject", CFG_NONFINITE_REJECT},
                                                 {"skip", CFG_NONFINITE_SKIP}};
static const cyaml_strval_t header_names[] = {
    {"auto", CFG_HEADER_AUTO}, {"yes", CFG_HEADER_YES}, {"no", CFG_HEADER_NO}};
#define CFG_STRVAL(v, name) {name, v},
/* The name tables of data/ and core/, as libcyaml wants them. */
static const cyaml_strval_t task_names[] = {DS_TASK_NAMES(CFG_STRVAL)};
static const cyaml_strval_t scale_names[] = {DS_SCALE_NAMES(CFG_STRVAL)};
static const cyaml_strval_t text_value_names[] = {DS_TEXT_VALUE_NAMES(CFG_STRVAL)};
static const cyaml_strval_t text_header_names[] = {DS_TEXT_HEADER_NAMES(CFG_STRVAL)};
static const cyaml_strval_t loss_names[] = {ML_LOSS_NAMES(CFG_STRVAL)};
static const cyaml_strval_t init_names[] = {ML_INIT_NAMES(CFG_STRVAL)};
/* Spelled as opt_kind_name spells them (tests/test_config.c checks that). */
static const cyaml_strval_t opt_names[] = {{"sgd", OPT_SGD},           {"momentum", OPT_MOMENTUM},
                                           {"nesterov", OPT_NESTEROV}, {"adagrad", OPT_ADAGRAD},
                                           {"rmsprop", OPT_RMSPROP},   {"adam", OPT_ADAM},
                                           {"adamw", OPT_ADAMW}};
/* The sparse tables' rules (core/sptable.h takes these four). */
static const cyaml_strval_t sparse_opt_names[] = {
    {"sgd", OPT_SGD}, {"adagrad", OPT_ADAGRAD}, {"adam", OPT_ADAM}, {"ftrl", OPT_FTRL}};
static const cyaml_strval_t sparse_init_names[] = {
    {"zeros", SPT_INIT_ZEROS}, {"uniform", SPT_INIT_UNIFORM}, {"normal", SPT_INIT_NORMAL}};
static const cyaml_strval_t divergence_names[] = {{"warn", CFG_DIV_WARN}, {"stop", CFG_DIV_STOP}};
static const cyaml_strval_t sched_names[] = {
    {"constant", OPT_SCHED_CONSTANT}, {"step", OPT_SCHED_STEP}, {"cosine", OPT_SCHED_COSINE}};

/* data.classes: a list of plain integers; data.categorical and friends: lists of strings. */
static const cyaml_schema_value_t class_id_value = {CYAML_VALUE_INT(CYAML_FLAG_DEFAULT, int)};
static const cyaml_schema_value_t name_value = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED)};
#define CFG_STR_LIST(key, member)                                                                  \
    CYAML_FIELD_SEQUENCE_COUNT(key, CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER, cfg_data, member,    \
                               member##_count, &name_value, 0, CYAML_UNLIMITED)

static const cyaml_strval_t fit_names[] = {{"pad", CFG_FIT_PAD}, {"resize", CFG_FIT_RESIZE}};
/* data.image (IDX): the size the model takes and how images of another size get it. */
const cyaml_schema_field_t cfg_image_fields[] = {
    CYAML_FIELD_INT("height", CFG_OPT, cfg_image, height),
    CYAML_FIELD_INT("width", CFG_OPT, cfg_image, width), CFG_ENUM("fit", cfg_image, fit, fit_names),
    CYAML_FIELD_END};

/* data.augment (IDX): random transforms of the training batches' images (data/augment.h). */
static const cyaml_schema_field_t augment_fields[] = {
    CYAML_FIELD_INT("shift", CFG_OPT, ds_aug_config, shift),
    CYAML_FIELD_FLOAT("flip", CFG_OPT_FLOAT, ds_aug_config, flip),
    CYAML_FIELD_FLOAT("rotate", CFG_OPT_FLOAT, ds_aug_config, rotate),
    CYAML_FIELD_FLOAT("noise", CFG_OPT_FLOAT, ds_aug_config, noise), CYAML_FIELD_END};

const cyaml_schema_field_t cfg_data_fields[] = {
    CFG_ENUM("format", cfg_data, format, format_names),
    CFG_STR("train", cfg_data, train),
    CFG_STR("train_labels", cfg_data, train_labels),
    CFG_STR("test", cfg_data, test),
    CFG_STR("test_labels", cfg_data, test_labels),
    CFG_ENUM("task", cfg_data, task, task_names),
    CYAML_FIELD_INT("num_classes", CFG_OPT, cfg_data, num_classes),
    CFG_STR("label", cfg_data, label),
    CYAML_FIELD_INT("label_index", CFG_OPT, cfg_data, label_index),
    CFG_ENUM("header", cfg_data, header, header_names),
    CFG_STR("delimiter", cfg_data, delimiter),
    CYAML_FIELD_INT("dim", CFG_OPT, cfg_data, dim),
    CYAML_FIELD_FLOAT("validation_split", CFG_OPT_FLOAT, cfg_data, validation_split),
    CFG_ENUM("scale", cfg_data, scale, scale_names),
    CYAML_FIELD_SEQUENCE_COUNT("classes", CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER, cfg_data,
                               classes, classes_count, &class_id_value, 0, CYAML_UNLIMITED),
    CYAML_FIELD_INT("limit", CFG_OPT, cfg_data, limit),
    CYAML_FIELD_BOOL("sparse", CFG_OPT, cfg_data, sparse),
    CFG_STR_LIST("categorical", categorical),
    CFG_STR_LIST("crosses", crosses),
    CYAML_FIELD_INT("hash_bits", CFG_OPT, cfg_data, hash_bits),
    CYAML_FIELD_UINT("hash_seed", CFG_OPT, cfg_data, hash_seed),
    CYAML_FIELD_INT("ngrams", CFG_OPT, cfg_data, ngrams),
    CFG_ENUM("text_value", cfg_data, text_value, text_value_names),
    CFG_ENUM("text_headers", cfg_data, text_headers, text_header_names),
    CFG_STR("text_suffix", cfg_data, text_suffix),
    CFG_STR_LIST("text_classes", text_classes),
    CFG_STR("tokenizer", cfg_data, tokenizer),
    CYAML_FIELD_INT("context", CFG_OPT, cfg_data, context),
    CYAML_FIELD_MAPPING("image", CFG_OPT, cfg_data, image, cfg_image_fields),
    CYAML_FIELD_MAPPING("augment", CFG_OPT, cfg_data, augment, augment_fields),
    CYAML_FIELD_END};

static const cyaml_schema_field_t gpt2_fields[] = {
    CYAML_FIELD_INT("n_layer", CFG_OPT, cfg_gpt2, n_layer),
    CYAML_FIELD_INT("n_head", CFG_OPT, cfg_gpt2, n_head),
    CYAML_FIELD_INT("n_embd", CFG_OPT, cfg_gpt2, n_embd),
    CYAML_FIELD_INT("n_positions", CFG_OPT, cfg_gpt2, n_positions),
    CYAML_FIELD_INT("vocab_size", CFG_OPT, cfg_gpt2, vocab_size),
    CYAML_FIELD_FLOAT("dropout", CFG_OPT_FLOAT, cfg_gpt2, dropout),
    CYAML_FIELD_END};

static const cyaml_schema_field_t lora_fields[] = {
    CYAML_FIELD_INT("rank", CFG_OPT, cfg_lora, rank),
    CYAML_FIELD_FLOAT("alpha", CFG_OPT_FLOAT, cfg_lora, alpha),
    CYAML_FIELD_SEQUENCE_COUNT("targets", CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER, cfg_lora,
                               targets, targets_count, &name_value, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END};

const cyaml_schema_field_t cfg_model_fields[] = {
    /* Layers are read by job/layers.c, not by libcyaml: their keys depend on the
     * type, which the layer registry defines. */
    CYAML_FIELD_IGNORE("layers", CYAML_FLAG_OPTIONAL),
    CFG_ENUM("loss", cfg_model, spec.loss, loss_names),
    CFG_ENUM("init", cfg_model, spec.init, init_names),
    CFG_STR("init_from", cfg_model, init_from),
    CYAML_FIELD_BOOL("keep_zeros", CFG_OPT, cfg_model, keep_zeros),
    CYAML_FIELD_MAPPING("gpt2", CFG_OPT, cfg_model, gpt2, gpt2_fields),
    CYAML_FIELD_MAPPING("lora", CFG_OPT, cfg_model, lora, lora_fields),
    CYAML_FIELD_BOOL("external", CFG_OPT, cfg_model, external),
    CYAML_FIELD_END};

const cyaml_schema_field_t cfg_opt_fields[] = {
    CFG_ENUM("name", opt_config, kind, opt_names),
    CYAML_FIELD_FLOAT("lr", CFG_OPT_FLOAT, opt_config, lr),
    CYAML_FIELD_FLOAT("momentum", CFG_OPT_FLOAT, opt_config, momentum),
    CYAML_FIELD_FLOAT("beta1", CFG_OPT_FLOAT, opt_config, beta1),
    CYAML_FIELD_FLOAT("beta2", CFG_OPT_FLOAT, opt_config, beta2),
    CYAML_FIELD_FLOAT("rho", CFG_OPT_FLOAT, opt_config, rho),
    CYAML_FIELD_FLOAT("eps", CFG_OPT_FLOAT, opt_config, eps),
    CYAML_FIELD_FLOAT("weight_decay", CFG_OPT_FLOAT, opt_config, weight_decay),
    CYAML_FIELD_FLOAT("clip_norm", CFG_OPT_FLOAT, opt_config, clip_norm),
    CFG_ENUM("schedule", opt_config, sched.kind, sched_names),
    CYAML_FIELD_INT("warmup_steps", CFG_OPT, opt_config, sched.warmup_steps),
    CYAML_FIELD_INT("step_size", CFG_OPT, opt_config, sched.step_size),
    CYAML_FIELD_FLOAT("gamma", CFG_OPT_FLOAT, opt_config, sched.gamma),
    CYAML_FIELD_INT("total_steps", CFG_OPT, opt_config, sched.total_steps),
    CYAML_FIELD_FLOAT("min_lr", CFG_OPT_FLOAT, opt_config, sched.min_lr),
    CYAML_FIELD_END};

/* Flat, as optimizer: is; its own field entries, since "was it set" is asked per field. */
const cyaml_schema_field_t cfg_sparse_fields[] = {
    CFG_ENUM("optimizer", cfg_sparse, opt.kind, sparse_opt_names),
    CYAML_FIELD_FLOAT("lr", CFG_OPT_FLOAT, cfg_sparse, opt.lr),
    CYAML_FIELD_FLOAT("beta1", CFG_OPT_FLOAT, cfg_sparse, opt.beta1),
    CYAML_FIELD_FLOAT("beta2", CFG_OPT_FLOAT, cfg_sparse, opt.beta2),
    CYAML_FIELD_FLOAT("eps", CFG_OPT_FLOAT, cfg_sparse, opt.eps),
    CYAML_FIELD_FLOAT("weight_decay", CFG_OPT_FLOAT, cfg_sparse, opt.weight_decay),
    CYAML_FIELD_FLOAT("ftrl_beta", CFG_OPT_FLOAT, cfg_sparse, opt.ftrl_beta),
    CYAML_FIELD_FLOAT("l1", CFG_OPT_FLOAT, cfg_sparse, opt.l1),
    CYAML_FIELD_FLOAT("l2", CFG_OPT_FLOAT, cfg_sparse, opt.l2),
    CFG_ENUM("init", cfg_sparse, init, sparse_init_names),
    CYAML_FIELD_INT("admit_after", CFG_OPT, cfg_sparse, admit_after),
    CYAML_FIELD_INT("expire_steps", CFG_OPT, cfg_sparse, expire_steps),
    CYAML_FIELD_INT("max_rows", CFG_OPT, cfg_sparse, max_rows),
    CYAML_FIELD_END};

static const cyaml_schema_field_t train_fields[] = {
    CYAML_FIELD_INT("batch_size", CFG_OPT, cfg_train, batch_size),
    CYAML_FIELD_INT("epochs", CFG_OPT, cfg_train, epochs),
    CYAML_FIELD_INT("threads", CFG_OPT, cfg_train, threads),
    CYAML_FIELD_BOOL("shuffle", CFG_OPT, cfg_train, shuffle),
    CYAML_FIELD_INT("log_every", CFG_OPT, cfg_train, log_every),
    CFG_ENUM("on_divergence", cfg_train, on_divergence, divergence_names),
    CYAML_FIELD_INT("accumulate", CFG_OPT, cfg_train, accumulate),
    CYAML_FIELD_END};

const cyaml_schema_field_t cfg_output_fields[] = {CFG_STR("dir", cfg_output, dir), CYAML_FIELD_END};

static const cyaml_strval_t compression_names[] = {{"none", CFG_COMP_NONE},
                                                   {"fp16", CFG_COMP_FP16},
                                                   {"bf16", CFG_COMP_BF16},
                                                   {"topk", CFG_COMP_TOPK}};

static const cyaml_strval_t consistency_names[] = {
    {"bsp", CFG_CONS_BSP}, {"ssp", CFG_CONS_SSP}, {"asp", CFG_CONS_ASP}};

static const cyaml_schema_field_t cluster_fields[] = {
    CYAML_FIELD_INT("servers", CFG_OPT, cfg_cluster, servers),
    CYAML_FIELD_INT("workers", CFG_OPT, cfg_cluster, workers),
    CFG_ENUM("consistency", cfg_cluster, consistency, consistency_names),
    CYAML_FIELD_INT("staleness", CFG_OPT, cfg_cluster, staleness),
    CYAML_FIELD_BOOL("pipeline", CFG_OPT, cfg_cluster, pipeline),
    CYAML_FIELD_INT("timeout_s", CFG_OPT, cfg_cluster, timeout_s),
    CYAML_FIELD_INT("heartbeat_ms", CFG_OPT, cfg_cluster, heartbeat_ms),
    CYAML_FIELD_INT("heartbeat_timeout_s", CFG_OPT, cfg_cluster, heartbeat_timeout_s),
    CYAML_FIELD_INT("max_restarts", CFG_OPT, cfg_cluster, max_restarts),
    CFG_ENUM("nonfinite", cfg_cluster, nonfinite, nonfinite_names),
    CYAML_FIELD_INT("metrics_port", CFG_OPT, cfg_cluster, metrics_port),
    CYAML_FIELD_BOOL("staleness_lr", CFG_OPT, cfg_cluster, staleness_lr),
    CYAML_FIELD_FLOAT("delay_compensation", CFG_OPT_FLOAT, cfg_cluster, delay_compensation),
    CYAML_FIELD_BOOL("async_momentum", CFG_OPT, cfg_cluster, async_momentum),
    CFG_ENUM("compression", cfg_cluster, compression, compression_names),
    CYAML_FIELD_FLOAT("topk_ratio", CFG_OPT_FLOAT, cfg_cluster, topk_ratio),
    CYAML_FIELD_END};

static const cyaml_schema_field_t checkpoint_fields[] = {
    CYAML_FIELD_BOOL("enabled", CFG_OPT, cfg_checkpoint, enabled),
    CFG_STR("dir", cfg_checkpoint, dir),
    CYAML_FIELD_INT("every_steps", CFG_OPT, cfg_checkpoint, every_steps),
    CYAML_FIELD_FLOAT("every_seconds", CFG_OPT_FLOAT, cfg_checkpoint, every_seconds),
    CYAML_FIELD_INT("keep", CFG_OPT, cfg_checkpoint, keep),
    CFG_STR("resume", cfg_checkpoint, resume),
    CYAML_FIELD_END};

static const cyaml_schema_field_t security_fields[] = {
    CFG_STR("server_key", cfg_security, server_key),
    CFG_STR("server_public", cfg_security, server_public),
    CFG_STR("client_key", cfg_security, client_key), CFG_STR("allow", cfg_security, allow),
    CYAML_FIELD_END};

const cyaml_schema_field_t cfg_job_fields[] = {
    CFG_STR("name", cfg_job, name),
    CYAML_FIELD_UINT("seed", CFG_OPT, cfg_job, seed),
    CYAML_FIELD_MAPPING("data", CFG_OPT, cfg_job, data, cfg_data_fields),
    CYAML_FIELD_MAPPING("model", CFG_OPT, cfg_job, model, cfg_model_fields),
    CYAML_FIELD_MAPPING("optimizer", CFG_OPT, cfg_job, optimizer, cfg_opt_fields),
    CYAML_FIELD_MAPPING("sparse", CFG_OPT, cfg_job, sparse, cfg_sparse_fields),
    CYAML_FIELD_MAPPING("train", CFG_OPT, cfg_job, train, train_fields),
    CYAML_FIELD_MAPPING("output", CFG_OPT, cfg_job, output, cfg_output_fields),
    CYAML_FIELD_MAPPING("cluster", CFG_OPT, cfg_job, cluster, cluster_fields),
    CYAML_FIELD_MAPPING("checkpoint", CFG_OPT, cfg_job, checkpoint, checkpoint_fields),
    CYAML_FIELD_MAPPING("security", CFG_OPT, cfg_job, security, security_fields),
    CYAML_FIELD_END};

/* Keys added after job fingerprints were fixed. cfg_job_hash of a job that leaves them at
 * their defaults must not change -- a checkpoint written before a key existed still
 * resumes -- so the fingerprint's text (cfg_job_print_fp) leaves such a key out while it
 * holds its default; and a key that changes nothing computed is always left out there. */
static const struct {
    const cyaml_schema_field_t *fields; /* the table the key is in */
    const char *key;
    cfg_fp_rule rule;
} late_keys[] = {
    {cfg_data_fields, "sparse", CFG_FP_UNLESS_DEFAULT}, /* sparse and hashed features */
    {cfg_data_fields, "categorical", CFG_FP_UNLESS_DEFAULT},
    {cfg_data_fields, "crosses", CFG_FP_UNLESS_DEFAULT},
    {cfg_data_fields, "hash_bits", CFG_FP_UNLESS_DEFAULT},
    {cfg_data_fields, "hash_seed", CFG_FP_UNLESS_DEFAULT},
    {cfg_data_fields, "ngrams", CFG_FP_UNLESS_DEFAULT},
    {cfg_data_fields, "text_value", CFG_FP_UNLESS_DEFAULT},
    {cfg_data_fields, "text_headers", CFG_FP_UNLESS_DEFAULT},
    {cfg_data_fields, "text_suffix", CFG_FP_UNLESS_DEFAULT},
    {cfg_data_fields, "text_classes", CFG_FP_UNLESS_DEFAULT},
    {cfg_data_fields, "tokenizer", CFG_FP_UNLESS_DEFAULT}, /* token windows */
    {cfg_data_fields, "context", CFG_FP_UNLESS_DEFAULT},
    {cfg_data_fields, "image", CFG_FP_UNLESS_DEFAULT},       /* IDX images adapted to a size */
    {cfg_data_fields, "augment", CFG_FP_UNLESS_DEFAULT},     /* training images transformed */
    {cfg_model_fields, "gpt2", CFG_FP_UNLESS_DEFAULT},       /* a GPT-2 configuration */
    {train_fields, "on_divergence", CFG_FP_NEVER},           /* what a failing run does */
    {train_fields, "accumulate", CFG_FP_UNLESS_DEFAULT},     /* gradient accumulation */
    {cluster_fields, "staleness_lr", CFG_FP_UNLESS_DEFAULT}, /* stale-gradient corrections */
    {cluster_fields, "delay_compensation", CFG_FP_UNLESS_DEFAULT},
    {cluster_fields, "async_momentum", CFG_FP_UNLESS_DEFAULT},
    /* How the floats travel: every message says its encoding, so processes need not agree,
     * and a checkpoint resumes under another. */
    {cluster_fields, "compression", CFG_FP_NEVER},
    {cluster_fields, "topk_ratio", CFG_FP_NEVER},
    {cfg_job_fields, "sparse", CFG_FP_UNLESS_DEFAULT},       /* embedding tables' rule and bounds */
    {cfg_model_fields, "external", CFG_FP_UNLESS_DEFAULT},   /* library workers' own model */
    {cfg_model_fields, "lora", CFG_FP_UNLESS_DEFAULT},       /* LoRA adapters */
    {cfg_model_fields, "keep_zeros", CFG_FP_UNLESS_DEFAULT}, /* pruning's mask held */
};

cfg_fp_rule cfg_field_fp_rule(const cyaml_schema_field_t *f)
{
    for (size_t i = 0; i < sizeof late_keys / sizeof late_keys[0]; i++)
        if (strcmp(f->key, late_keys[i].key) == 0 &&
            cfg_field_find(late_keys[i].fields, f->key) == f)
            return late_keys[i].rule;
    return CFG_FP_COUNTED;
}

const cyaml_schema_value_t cfg_job_value = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, cfg_job, cfg_job_fields)};

const char *cfg_enum_name(const cyaml_strval_t *t, size_t n, int64_t v)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].val == v)
            return t[i].str;
    return NULL;
}

const char *cfg_consistency_name(cfg_consistency c)
{
    const char *s = cfg_enum_name(consistency_names, CYAML_ARRAY_LEN(consistency_names), c);
    return s ? s : "unknown";
}

const char *cfg_format_name(cfg_format f)
{
    const char *s = cfg_enum_name(format_names, CYAML_ARRAY_LEN(format_names), f);
    return s ? s : "unknown";
}

const char *cfg_compression_name(cfg_compression c)
{
    const char *s = cfg_enum_name(compression_names, CYAML_ARRAY_LEN(compression_names), c);
    return s ? s : "unknown";
}

const cyaml_schema_field_t *cfg_field_find(const cyaml_schema_field_t *fields, const char *key)
{
    for (const cyaml_schema_field_t *f = fields; f->key; f++)
        if (strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

/* "format, train, train_labels, ..." for "unknown key" messages. */
void cfg_field_list(const cyaml_schema_field_t *fields, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (const cyaml_schema_field_t *f = fields; f->key && len < n; f++) {
        int w = snprintf(buf + len, n - len, "%s%s", f == fields ? "" : ", ", f->key);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

/* ---- Memory: everything through libcyaml's allocator ------------------------------- */

char *cfg_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = cyaml_mem(NULL, NULL, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void cfg_strfree(char *s)
{
    if (s)
        cyaml_mem(NULL, s, 0);
}

/* ---- Raw field access by size (the schema records data_size) ------------------------- */

int64_t cfg_load_int(const void *p, uint32_t size)
{
    switch (size) {
    case 1: {
        int8_t v;
        memcpy(&v, p, 1);
        return v;
    }
    case 2: {
        int16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case 4: {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case 8: {
        int64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    }
    assert(!"integer field of unsupported size");
    return 0;
}

uint64_t cfg_load_uint(const void *p, uint32_t size)
{
    switch (size) {
    case 1: {
        uint8_t v;
        memcpy(&v, p, 1);
        return v;
    }
    case 2: {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case 4: {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case 8: {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    }
    assert(!"integer field of unsupported size");
    return 0;
}

/* v is in range for size (cfg_parse_scalar checked), so the narrowing is exact. */
static void store_int(void *p, uint32_t size, int64_t v)
{
    switch (size) {
    case 1: {
        int8_t t = (int8_t)v;
        memcpy(p, &t, 1);
        return;
    }
    case 2: {
        int16_t t = (int16_t)v;
        memcpy(p, &t, 2);
        return;
    }
    case 4: {
        int32_t t = (int32_t)v;
        memcpy(p, &t, 4);
        return;
    }
    case 8: memcpy(p, &v, 8); return;
    }
    assert(!"integer field of unsupported size");
}

void cfg_store_uint(void *p, uint32_t size, uint64_t v)
{
    switch (size) {
    case 1: {
        uint8_t t = (uint8_t)v;
        memcpy(p, &t, 1);
        return;
    }
    case 2: {
        uint16_t t = (uint16_t)v;
        memcpy(p, &t, 2);
        return;
    }
    case 4: {
        uint32_t t = (uint32_t)v;
        memcpy(p, &t, 4);
        return;
    }
    case 8: memcpy(p, &v, 8); return;
    }
    assert(!"integer field of unsupported size");
}

double cfg_load_float(const void *p, uint32_t size)
{
    if (size == sizeof(float)) {
        float v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    assert(size == sizeof(double));
    double v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- Scalars: one strict parser for files (pass 1) and overrides --------------------- */

/* The words libcyaml's CYAML_FLAG_POINTER_NULL_STR loads as NULL, plus the empty string. */
int cfg_is_null_word(const char *s)
{
    return !s[0] || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

static int parse_bool(const char *s, int64_t *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Parses text as the value schema v describes; on failure writes why ("'abc' is not a
 * number") and returns -1. Accepts a subset of what libcyaml accepts, read to the same
 * value: libcyaml 1.3 parses with strtoll(base 0)/strtoull/strtof/strtod but stops at the
 * first bad character, which is what the full-consumption checks here add. */
int cfg_parse_scalar(const cyaml_schema_value_t *v, const char *text, cfg_scalar *out, char *why,
                     size_t whylen)
{
    memset(out, 0, sizeof *out);
    if (v->type != CYAML_STRING && !text[0]) {
        snprintf(why, whylen, "no value given");
        return -1;
    }
    /* strto* skip leading space; a value " 5" would be a typo in a file or a flag. */
    int lead_space = text[0] == ' ' || text[0] == '\t' || text[0] == '\n' || text[0] == '\r';
    char *end = NULL;
    switch (v->type) {
    case CYAML_INT: {
        errno = 0;
        long long x = strtoll(text, &end, 0);
        if (lead_space || *end || end == text) {
            snprintf(why, whylen, "'%s' is not an integer", text);
            return -1;
        }
        int64_t hi = v->data_size >= 8 ? INT64_MAX : (INT64_C(1) << (8 * v->data_size - 1)) - 1;
        int64_t lo = -hi - 1;
        if (errno == ERANGE || x < lo || x > hi) {
            snprintf(why, whylen, "'%s' is out of range [%" PRId64 ", %" PRId64 "]", text, lo, hi);
            return -1;
        }
        out->i = x;
        return 0;
    }
    case CYAML_UINT: {
        errno = 0;
        unsigned long long x = strtoull(text, &end, 0);
        if (lead_space || *end || end == text || text[0] == '-' || text[0] == '+') {
            snprintf(why, whylen, "'%s' is not a non-negative integer", text);
            return -1;
        }
        uint64_t hi = v->data_size >= 8 ? UINT64_MAX : (UINT64_C(1) << (8 * v->data_size)) - 1;
        if (errno == ERANGE || x > hi) {
            snprintf(why, whylen, "'%s' is out of range [0, %" PRIu64 "]", text, hi);
            return -1;
        }
        out->u = x;
        return 0;
    }
    case CYAML_FLOAT: {
        errno = 0;
        double x;
        if (v->data_size == sizeof(float)) {
            float f = strtof(text, &end); /* not strtod + cast: that can round twice */
            x = f;
        } else {
            x = strtod(text, &end);
        }
        if (lead_space || *end || end == text) {
            snprintf(why, whylen, "'%s' is not a number", text);
            return -1;
        }
        /* libcyaml's CYAML_FLAG_STRICT refuses overflow and underflow (subnormals too). */
        double tiny = v->data_size == sizeof(float) ? FLT_MIN : DBL_MIN;
        if (errno == ERANGE || (isfinite(x) && x != 0.0 && fabs(x) < tiny)) {
            snprintf(why, whylen, "'%s' is out of range for a %s", text,
                     v->data_size == sizeof(float) ? "float" : "double");
            return -1;
        }
        if (!isfinite(x)) {
            snprintf(why, whylen, "'%s' is not a finite number", text);
            return -1;
        }
        out->d = x;
        return 0;
    }
    case CYAML_BOOL:
        if (parse_bool(text, &out->i)) {
            snprintf(why, whylen, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)", text);
            return -1;
        }
        return 0;
    case CYAML_ENUM:
        for (uint32_t k = 0; k < v->enumeration.count; k++) {
            if (strcmp(text, v->enumeration.strings[k].str) == 0) {
                out->i = v->enumeration.strings[k].val;
                return 0;
            }
        }
        {
            int len = snprintf(why, whylen, "'%s' is not one of:", text);
            for (uint32_t k = 0; k < v->enumeration.count && len >= 0 && (size_t)len < whylen; k++)
                len += snprintf(why + len, whylen - (size_t)len, "%s %s", k ? "," : "",
                                v->enumeration.strings[k].str);
        }
        return -1;
    case CYAML_STRING: out->s = cfg_is_null_word(text) ? NULL : text; return 0;
    default:
        assert(!"scalar type the schema does not use");
        snprintf(why, whylen, "unsupported value type");
        return -1;
    }
}

/* Writes a parsed scalar into the field at p. Strings replace (and free) the old one. */
int cfg_store_scalar(const cyaml_schema_value_t *v, void *p, const cfg_scalar *val)
{
    switch (v->type) {
    case CYAML_INT:
    case CYAML_ENUM:
    case CYAML_BOOL: store_int(p, v->data_size, val->i); return PST_OK;
    case CYAML_UINT: cfg_store_uint(p, v->data_size, val->u); return PST_OK;
    case CYAML_FLOAT:
        if (v->data_size == sizeof(float)) {
            float f = (float)val->d;
            memcpy(p, &f, sizeof f);
        } else {
            memcpy(p, &val->d, sizeof val->d);
        }
        return PST_OK;
    case CYAML_STRING: {
        char *s = NULL;
        if (val->s && !(s = cfg_strdup(val->s)))
            return PST_ERR_NOMEM;
        char *old;
        memcpy(&old, p, sizeof old);
        cfg_strfree(old);
        memcpy(p, &s, sizeof s);
        return PST_OK;
    }
    default: assert(!"scalar type the schema does not use"); return PST_ERR_ARG;
    }
}
