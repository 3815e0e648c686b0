/* job/job.c -- job files: the libcyaml schema, defaults, overrides, checks, printing.
 *
 * Keys of a job file (every one optional; cfg_job_check then demands what a run needs):
 *
 *   name: string                    "pstrain-job"
 *   seed: unsigned integer          42
 *   data:
 *     format: idx|csv|libsvm        idx
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
 *   output:
 *     dir: path                     "runs/<name>"
 *   cluster: servers, workers, consistency, staleness, pipeline, timeout_s, heartbeat_ms,
 *            heartbeat_timeout_s, max_restarts, nonfinite, metrics_port (config.h)
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
 *
 * Why a job is loaded in three passes:
 *   libcyaml 1.3 zero-fills optional fields the file leaves out and has no per-field
 *   default, so after cyaml_load_data "absent" and "written as 0" look alike, yet
 *   `optimizer: {name: adam}` must get adam's lr. Its scalar parsing is also lenient:
 *   "epochs: 5abc" loads as 5, "1.5" as 1, "shuffle: banana" as true.
 *   1. scan_*: walks the libyaml event stream alongside the very schema tables given to
 *      libcyaml. It rejects unknown and repeated keys, wrong shapes (a list where a number
 *      belongs) and every scalar that parse_scalar -- the parser cfg_override uses too --
 *      refuses, naming the key's own line; and it records which fields outside the layer
 *      list the file sets.
 *   2. cyaml_load_data builds the struct. Whatever parse_scalar accepts, libcyaml reads to
 *      the same value (both use strtoll base 0, strtof/strtod, exact enum names, the same
 *      false words), so the passes cannot disagree. Its log goes to a per-call buffer
 *      (cyaml_config.log_ctx) and becomes the error message should it still refuse.
 *   3. fill_defaults copies, for each field pass 1 did not see, the value of a template
 *      job whose optimizer part is opt_config_default(the kind now loaded).
 *   cfg_job_check then runs on the struct; when it refuses a key the file sets, one more
 *   scan finds that key's line for the message.
 * Aliases (*name) are refused: pass 1 would have to resolve them to know what they set.
 *
 * Every string and the layer array are allocated with cyaml_mem, libcyaml's allocator, also
 * when this file makes them (defaults, overrides), so cyaml_free frees any job. */
#include "job.h"

#include <assert.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cyaml/cyaml.h>
#include <yaml.h>

#define CFG_PATH_MAX 256
#define CFG_FILE_MAX (16L << 20) /* bytes; a job file is a few hundred */

/* ---- Schema ------------------------------------------------------------------------ */

#define CFG_OPT (CYAML_FLAG_OPTIONAL)
#define CFG_OPT_ENUM (CYAML_FLAG_OPTIONAL | CYAML_FLAG_STRICT)
#define CFG_OPT_FLOAT (CYAML_FLAG_OPTIONAL | CYAML_FLAG_STRICT)
#define CFG_OPT_STR (CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER_NULL_STR)
#define CFG_STR(key, type, member) \
    CYAML_FIELD_STRING_PTR(key, CFG_OPT_STR, type, member, 0, CYAML_UNLIMITED)
#define CFG_ENUM(key, type, member, table) \
    CYAML_FIELD_ENUM(key, CFG_OPT_ENUM, type, member, table, CYAML_ARRAY_LEN(table))

static const cyaml_strval_t format_names[] = {
    {"idx", CFG_FMT_IDX}, {"csv", CFG_FMT_CSV}, {"libsvm", CFG_FMT_LIBSVM}};
static const cyaml_strval_t nonfinite_names[] = {{"reject", CFG_NONFINITE_REJECT},
                                                 {"skip", CFG_NONFINITE_SKIP}};
static const cyaml_strval_t task_names[] = {{"classify", CFG_TASK_CLASSIFY},
                                            {"regress", CFG_TASK_REGRESS}};
static const cyaml_strval_t header_names[] = {
    {"auto", CFG_HEADER_AUTO}, {"yes", CFG_HEADER_YES}, {"no", CFG_HEADER_NO}};
static const cyaml_strval_t scale_names[] = {
    {"none", CFG_SCALE_NONE}, {"minmax", CFG_SCALE_MINMAX}, {"standardize", CFG_SCALE_STANDARDIZE}};
#define CFG_STRVAL(v, name) {name, v},
static const cyaml_strval_t loss_names[] = {ML_LOSS_NAMES(CFG_STRVAL)};
static const cyaml_strval_t init_names[] = {ML_INIT_NAMES(CFG_STRVAL)};
/* Spelled as opt_kind_name spells them (tests/test_config.c checks that). */
static const cyaml_strval_t opt_names[] = {
    {"sgd", OPT_SGD},         {"momentum", OPT_MOMENTUM}, {"nesterov", OPT_NESTEROV},
    {"adagrad", OPT_ADAGRAD}, {"rmsprop", OPT_RMSPROP},   {"adam", OPT_ADAM},
    {"adamw", OPT_ADAMW}};
static const cyaml_strval_t sched_names[] = {
    {"constant", OPT_SCHED_CONSTANT}, {"step", OPT_SCHED_STEP}, {"cosine", OPT_SCHED_COSINE}};

/* data.classes: a list of plain integers (the only list of scalars in the schema). */
static const cyaml_schema_value_t class_id_value = {CYAML_VALUE_INT(CYAML_FLAG_DEFAULT, int)};

static const cyaml_schema_field_t data_fields[] = {
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
    CYAML_FIELD_END};

static const cyaml_schema_field_t model_fields[] = {
    /* Layers are read by this file (layers.c), not by libcyaml: their keys depend on the
     * type, which the layer registry defines. */
    CYAML_FIELD_IGNORE("layers", CYAML_FLAG_OPTIONAL),
    CFG_ENUM("loss", cfg_model, spec.loss, loss_names),
    CFG_ENUM("init", cfg_model, spec.init, init_names),
    CFG_STR("init_from", cfg_model, init_from),
    CYAML_FIELD_END};

static const cyaml_schema_field_t opt_fields[] = {
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

static const cyaml_schema_field_t train_fields[] = {
    CYAML_FIELD_INT("batch_size", CFG_OPT, cfg_train, batch_size),
    CYAML_FIELD_INT("epochs", CFG_OPT, cfg_train, epochs),
    CYAML_FIELD_INT("threads", CFG_OPT, cfg_train, threads),
    CYAML_FIELD_BOOL("shuffle", CFG_OPT, cfg_train, shuffle),
    CYAML_FIELD_INT("log_every", CFG_OPT, cfg_train, log_every),
    CYAML_FIELD_END};

static const cyaml_schema_field_t output_fields[] = {
    CFG_STR("dir", cfg_output, dir),
    CYAML_FIELD_END};

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
    CFG_STR("client_key", cfg_security, client_key),
    CFG_STR("allow", cfg_security, allow),
    CYAML_FIELD_END};

static const cyaml_schema_field_t job_fields[] = {
    CFG_STR("name", cfg_job, name),
    CYAML_FIELD_UINT("seed", CFG_OPT, cfg_job, seed),
    CYAML_FIELD_MAPPING("data", CFG_OPT, cfg_job, data, data_fields),
    CYAML_FIELD_MAPPING("model", CFG_OPT, cfg_job, model, model_fields),
    CYAML_FIELD_MAPPING("optimizer", CFG_OPT, cfg_job, optimizer, opt_fields),
    CYAML_FIELD_MAPPING("train", CFG_OPT, cfg_job, train, train_fields),
    CYAML_FIELD_MAPPING("output", CFG_OPT, cfg_job, output, output_fields),
    CYAML_FIELD_MAPPING("cluster", CFG_OPT, cfg_job, cluster, cluster_fields),
    CYAML_FIELD_MAPPING("checkpoint", CFG_OPT, cfg_job, checkpoint, checkpoint_fields),
    CYAML_FIELD_MAPPING("security", CFG_OPT, cfg_job, security, security_fields),
    CYAML_FIELD_END};

static const cyaml_schema_value_t job_value = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, cfg_job, job_fields)};

/* The fields cfg_override and fill_defaults treat specially. */
#define FIELD_JOB_NAME (&job_fields[0])
#define FIELD_OPT_NAME (&opt_fields[0])
#define FIELD_OUTPUT_DIR (&output_fields[0])
#define FIELD_LAYERS (&model_fields[0])

static const char *enum_name(const cyaml_strval_t *t, size_t n, int64_t v)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].val == v)
            return t[i].str;
    return NULL;
}

const char *cfg_consistency_name(cfg_consistency c)
{
    const char *s = enum_name(consistency_names, CYAML_ARRAY_LEN(consistency_names), c);
    return s ? s : "unknown";
}

uint64_t cfg_job_hash(const cfg_job *job)
{
    char *text = NULL;
    size_t len = 0;
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a offset basis */
    /* What processes must agree on: the model, optimizer, cluster and training settings.
     * Data paths and output folders may legitimately be spelled differently per host. */
    cfg_job same = *job;
    memset(&same.data, 0, sizeof same.data);
    same.data.task = job->data.task;
    same.data.num_classes = job->data.num_classes;
    /* Which samples train does matter; where the pretrained weights lie is a path. */
    same.data.classes = job->data.classes;
    same.data.classes_count = job->data.classes_count;
    same.data.limit = job->data.limit;
    same.model.init_from = NULL;
    same.output.dir = NULL;
    same.train.threads = 1;
    /* Where and how often checkpoints are written, and whether this run resumes, change
     * nothing that is computed: a resumed run is the same job. */
    memset(&same.checkpoint, 0, sizeof same.checkpoint);
    /* Key files are paths too; peers whose keys do not match cannot talk at all. */
    memset(&same.security, 0, sizeof same.security);
    /* Failure detection and restarts are each process's (or launcher's) own business. */
    same.cluster.heartbeat_ms = 0;
    same.cluster.heartbeat_timeout_s = 0;
    same.cluster.max_restarts = 0;
    /* Where metrics are served is no part of what is computed either. */
    same.cluster.metrics_port = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return 0;
    int rc = cfg_job_print(&same, f, NULL);
    fclose(f);
    if (rc == PST_OK)
        for (size_t i = 0; i < len; i++)
            h = (h ^ (unsigned char)text[i]) * 0x100000001b3ULL;
    free(text);
    return rc == PST_OK ? h : 0;
}

static const cyaml_schema_field_t *field_find(const cyaml_schema_field_t *fields, const char *key)
{
    for (const cyaml_schema_field_t *f = fields; f->key; f++)
        if (strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

/* "format, train, train_labels, ..." for "unknown key" messages. */
static void field_list(const cyaml_schema_field_t *fields, char *buf, size_t n)
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

static char *cfg_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = cyaml_mem(NULL, NULL, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static void cfg_strfree(char *s)
{
    if (s)
        cyaml_mem(NULL, s, 0);
}

/* ---- Raw field access by size (the schema records data_size) ------------------------- */

static int64_t load_int(const void *p, uint32_t size)
{
    switch (size) {
    case 1: { int8_t v; memcpy(&v, p, 1); return v; }
    case 2: { int16_t v; memcpy(&v, p, 2); return v; }
    case 4: { int32_t v; memcpy(&v, p, 4); return v; }
    case 8: { int64_t v; memcpy(&v, p, 8); return v; }
    }
    assert(!"integer field of unsupported size");
    return 0;
}

static uint64_t load_uint(const void *p, uint32_t size)
{
    switch (size) {
    case 1: { uint8_t v; memcpy(&v, p, 1); return v; }
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    case 8: { uint64_t v; memcpy(&v, p, 8); return v; }
    }
    assert(!"integer field of unsupported size");
    return 0;
}

/* v is in range for size (parse_scalar checked), so the narrowing is exact. */
static void store_int(void *p, uint32_t size, int64_t v)
{
    switch (size) {
    case 1: { int8_t t = (int8_t)v; memcpy(p, &t, 1); return; }
    case 2: { int16_t t = (int16_t)v; memcpy(p, &t, 2); return; }
    case 4: { int32_t t = (int32_t)v; memcpy(p, &t, 4); return; }
    case 8: memcpy(p, &v, 8); return;
    }
    assert(!"integer field of unsupported size");
}

static void store_uint(void *p, uint32_t size, uint64_t v)
{
    switch (size) {
    case 1: { uint8_t t = (uint8_t)v; memcpy(p, &t, 1); return; }
    case 2: { uint16_t t = (uint16_t)v; memcpy(p, &t, 2); return; }
    case 4: { uint32_t t = (uint32_t)v; memcpy(p, &t, 4); return; }
    case 8: memcpy(p, &v, 8); return;
    }
    assert(!"integer field of unsupported size");
}

static double load_float(const void *p, uint32_t size)
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

typedef struct {
    int64_t i;     /* CYAML_INT, CYAML_ENUM, CYAML_BOOL */
    uint64_t u;    /* CYAML_UINT */
    double d;      /* CYAML_FLOAT (already rounded to float for 4-byte fields) */
    const char *s; /* CYAML_STRING: borrowed text; NULL for the null words */
} cfg_scalar;

/* The words libcyaml's CYAML_FLAG_POINTER_NULL_STR loads as NULL, plus the empty string. */
static int is_null_word(const char *s)
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
static int parse_scalar(const cyaml_schema_value_t *v, const char *text, cfg_scalar *out,
                        char *why, size_t whylen)
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
            snprintf(why, whylen, "'%s' is out of range [%" PRId64 ", %" PRId64 "]", text, lo,
                     hi);
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
            snprintf(why, whylen, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)",
                     text);
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
            for (uint32_t k = 0; k < v->enumeration.count && len >= 0 && (size_t)len < whylen;
                 k++)
                len += snprintf(why + len, whylen - (size_t)len, "%s %s", k ? "," : "",
                                v->enumeration.strings[k].str);
        }
        return -1;
    case CYAML_STRING:
        out->s = is_null_word(text) ? NULL : text;
        return 0;
    default:
        assert(!"scalar type the schema does not use");
        snprintf(why, whylen, "unsupported value type");
        return -1;
    }
}

/* Writes a parsed scalar into the field at p. Strings replace (and free) the old one. */
static int store_scalar(const cyaml_schema_value_t *v, void *p, const cfg_scalar *val)
{
    switch (v->type) {
    case CYAML_INT:
    case CYAML_ENUM:
    case CYAML_BOOL: store_int(p, v->data_size, val->i); return PST_OK;
    case CYAML_UINT: store_uint(p, v->data_size, val->u); return PST_OK;
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

/* ---- Pass 1: schema-guided scan of the libyaml events ------------------------------- */

#define CFG_MAX_SET 128 /* > the number of fields outside the layer list (45) */

typedef struct {
    yaml_parser_t parser;
    const char *source;
    pst_err *err;
    char path[CFG_PATH_MAX]; /* dotted path of the node being scanned */
    const cyaml_schema_field_t *set[CFG_MAX_SET]; /* fields the file sets (outside lists) */
    size_t nset;
    const char *find;  /* a dotted path whose line to report, or NULL */
    size_t found_line; /* its key's line, 0 until seen */
    const ml_registry *reg; /* layer types */
    ml_layer_spec *layers;  /* model.layers as read (moved into the job when it loads) */
    unsigned nlayers, layers_cap;
} cfg_scan;

static void scan_fini(cfg_scan *sc)
{
    for (unsigned i = 0; i < sc->nlayers; i++)
        ml_layer_spec_fini(&sc->layers[i]);
    free(sc->layers);
    sc->layers = NULL;
    sc->nlayers = sc->layers_cap = 0;
}

static int field_was_set(const cfg_scan *sc, const cyaml_schema_field_t *f)
{
    for (size_t i = 0; i < sc->nset; i++)
        if (sc->set[i] == f)
            return 1;
    return 0;
}

/* "<source>:<line>: <path>: <msg>", the path left out at the top level. */
static int scan_fail(cfg_scan *sc, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int scan_fail(cfg_scan *sc, size_t line, const char *fmt, ...)
{
    char msg[sizeof sc->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (sc->path[0])
        return pst_err_set(sc->err, PST_ERR_CONFIG, "%s:%zu: %s: %s", sc->source, line, sc->path,
                           msg);
    return pst_err_set(sc->err, PST_ERR_CONFIG, "%s:%zu: %s", sc->source, line, msg);
}

static int scan_next(cfg_scan *sc, yaml_event_t *ev)
{
    if (yaml_parser_parse(&sc->parser, ev))
        return PST_OK;
    const yaml_parser_t *p = &sc->parser;
    return pst_err_set(sc->err, PST_ERR_CONFIG, "%s:%zu: YAML syntax error: %s%s%s", sc->source,
                       p->problem_mark.line + 1, p->problem ? p->problem : "unknown",
                       p->context ? " " : "", p->context ? p->context : "");
}

/* Appends ".comp" (or "comp" at the top) to sc->path; returns the old length to restore. */
static size_t path_push(cfg_scan *sc, const char *comp)
{
    size_t len = strlen(sc->path);
    snprintf(sc->path + len, sizeof sc->path - len, "%s%s", len ? "." : "", comp);
    return len;
}

static const char *shape_name(const cyaml_schema_value_t *v)
{
    switch (v->type) {
    case CYAML_MAPPING: return "a mapping of keys";
    case CYAML_SEQUENCE: return "a list";
    case CYAML_INT: return "an integer";
    case CYAML_UINT: return "a non-negative integer";
    case CYAML_FLOAT: return "a number";
    case CYAML_BOOL: return "a boolean";
    case CYAML_ENUM: return "a name";
    default: return "a string";
    }
}

/* ---- Layers: keys by type, from the layer registry ---------------------------------- */

/* The keys every layer has, whatever its type, after `type` and the type's own. */
static const char *const layer_common[] = {"name", "inputs", "trainable", "lr_mult"};

/* "type, units, activation, name, inputs, trainable, lr_mult" for messages. */
static void layer_key_list(const ml_layer_ops *ops, char *buf, size_t n)
{
    size_t len = (size_t)snprintf(buf, n, "type");
    for (int k = 0; ops && k < ops->nkeys && len < n; k++)
        if (!(ops->keys[k].flags & ML_KEY_COMPAT))
            len += (size_t)snprintf(buf + len, n - len, ", %s", ops->keys[k].name);
    for (size_t c = 0; c < sizeof layer_common / sizeof layer_common[0] && len < n; c++)
        len += (size_t)snprintf(buf + len, n - len, ", %s", layer_common[c]);
}

static const char *type_why(const ml_registry *reg, const char *text, char *why, size_t whylen)
{
    char names[256];
    ml_registry_names(reg, names, sizeof names);
    snprintf(why, whylen, "'%s' is not one of: %s", text, names);
    return why;
}

/* Replaces L's inputs with the names in items[0..n) (n == 0: the previous layer). */
static int set_inputs(ml_layer_spec *L, const char *const *items, size_t n)
{
    char **arr = n ? calloc(n, sizeof *arr) : NULL;
    if (n && !arr)
        return PST_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        if (!(arr[i] = strdup(items[i]))) {
            while (i--)
                free(arr[i]);
            free(arr);
            return PST_ERR_NOMEM;
        }
    for (unsigned i = 0; i < L->ninputs; i++)
        free(L->inputs[i]);
    free(L->inputs);
    L->inputs = arr;
    L->ninputs = (unsigned)n;
    return PST_OK;
}

/* "a, b", "[a, b]", "a" or "" (the previous layer): the inputs as written on the command
 * line (or as a scalar in a file). */
static int set_inputs_text(ml_layer_spec *L, const char *text, char *why, size_t whylen)
{
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", text) >= (int)sizeof buf) {
        snprintf(why, whylen, "list too long");
        return -1;
    }
    char *p = buf;
    while (*p == ' ')
        p++;
    size_t n = strlen(p);
    while (n && p[n - 1] == ' ')
        p[--n] = '\0';
    if (n && p[0] == '[' && p[n - 1] == ']') {
        p[n - 1] = '\0';
        p++;
    }
    const char *items[ML_MAX_INPUTS + 1];
    size_t count = 0;
    char *save = NULL;
    for (char *it = strtok_r(p, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
        while (*it == ' ')
            it++;
        size_t il = strlen(it);
        while (il && it[il - 1] == ' ')
            it[--il] = '\0';
        if (!il || is_null_word(it))
            continue;
        if (count == ML_MAX_INPUTS) {
            snprintf(why, whylen, "more than %d inputs", ML_MAX_INPUTS);
            return -1;
        }
        items[count++] = it;
    }
    if (set_inputs(L, items, count)) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

/* Parses text as the value of key k of a layer into *out (strings borrowed). */
static int parse_layer_value(const ml_layer_key *k, const char *text, ml_value *out, char *why,
                             size_t whylen)
{
    static const cyaml_schema_value_t v_int = {CYAML_VALUE_INT(CYAML_FLAG_DEFAULT, int)};
    static const cyaml_schema_value_t v_float = {CYAML_VALUE_FLOAT(CYAML_FLAG_DEFAULT, double)};
    static const cyaml_schema_value_t v_bool = {CYAML_VALUE_BOOL(CYAML_FLAG_DEFAULT, int)};
    cfg_scalar val;
    memset(out, 0, sizeof *out);
    switch (k->kind) {
    case ML_KEY_INT:
        if (parse_scalar(&v_int, text, &val, why, whylen))
            return -1;
        out->i = val.i;
        return 0;
    case ML_KEY_FLOAT:
        if (parse_scalar(&v_float, text, &val, why, whylen))
            return -1;
        out->f = val.d;
        return 0;
    case ML_KEY_BOOL:
        if (parse_scalar(&v_bool, text, &val, why, whylen))
            return -1;
        out->i = val.i;
        return 0;
    case ML_KEY_ENUM: {
        for (int i = 0; k->enum_name(i); i++)
            if (strcmp(text, k->enum_name(i)) == 0) {
                out->i = i;
                return 0;
            }
        int len = snprintf(why, whylen, "'%s' is not one of:", text);
        for (int i = 0; k->enum_name(i) && len >= 0 && (size_t)len < whylen; i++)
            len += snprintf(why + len, whylen - (size_t)len, "%s %s", i ? "," : "",
                            k->enum_name(i));
        return -1;
    }
    case ML_KEY_STRING: out->s = is_null_word(text) ? NULL : (char *)text; return 0;
    }
    snprintf(why, whylen, "unsupported value type");
    return -1;
}

/* Sets key `key` of layer L from text (a scalar). Returns 0, 1 for a key the layer does
 * not have, -1 for a bad value (why says what), PST_ERR_NOMEM-like -2 for memory. */
static int set_layer_key(const ml_registry *reg, ml_layer_spec *L, const char *key,
                         const char *text, char *why, size_t whylen)
{
    if (strcmp(key, "type") == 0) {
        const ml_layer_ops *ops = ml_registry_find(reg, text);
        if (!ops) {
            type_why(reg, text, why, whylen);
            return -1;
        }
        ml_layer_spec_set_type(L, ops);
        return 0;
    }
    if (strcmp(key, "name") == 0) {
        char *s = NULL;
        if (!is_null_word(text) && !(s = strdup(text)))
            return -2;
        free(L->name);
        L->name = s;
        return 0;
    }
    if (strcmp(key, "inputs") == 0)
        return set_inputs_text(L, text, why, whylen);
    cfg_scalar val;
    if (strcmp(key, "trainable") == 0) {
        static const cyaml_schema_value_t v_bool = {CYAML_VALUE_BOOL(CYAML_FLAG_DEFAULT, int)};
        if (parse_scalar(&v_bool, text, &val, why, whylen))
            return -1;
        L->trainable = (int)val.i;
        return 0;
    }
    if (strcmp(key, "lr_mult") == 0) {
        static const cyaml_schema_value_t v_f = {CYAML_VALUE_FLOAT(CYAML_FLAG_DEFAULT, float)};
        if (parse_scalar(&v_f, text, &val, why, whylen))
            return -1;
        L->lr_mult = (float)val.d;
        return 0;
    }
    int k = ml_layer_key_find(L->ops, key);
    if (k < 0)
        return 1;
    const ml_layer_key *K = &L->ops->keys[k];
    ml_value v;
    if (parse_layer_value(K, text, &v, why, whylen))
        return -1;
    if (K->kind == ML_KEY_STRING) {
        char *s = v.s ? strdup(v.s) : NULL;
        if (v.s && !s)
            return -2;
        free(L->val[k].s);
        v.s = s;
    }
    L->val[k] = v;
    return 0;
}

/* One key of a layer entry as the scan met it, kept until the entry's type is known. */
typedef struct {
    char *key;
    char *text;     /* a scalar's text; for a list (inputs) its items joined by "," */
    size_t line;
} layer_arg;

#define CFG_LAYER_ARGS 32

static void free_args(layer_arg *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].key);
        free(a[i].text);
    }
}

/* A list of plain names (inputs: [a, b]) joined into "a,b". */
static int scan_name_list(cfg_scan *sc, char **out)
{
    char buf[1024];
    size_t len = 0;
    buf[0] = '\0';
    for (;;) {
        yaml_event_t ev;
        int rc = scan_next(sc, &ev);
        if (rc)
            return rc;
        size_t line = ev.start_mark.line + 1;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&ev);
            return scan_fail(sc, line, "expected a list of layer names");
        }
        const char *t = (const char *)ev.data.scalar.value;
        int w = snprintf(buf + len, sizeof buf - len, "%s%s", len ? "," : "", t);
        int bad = strchr(t, ',') != NULL;
        yaml_event_delete(&ev);
        if (bad)
            return scan_fail(sc, line, "a layer name has no ','");
        if (w < 0 || (size_t)w >= sizeof buf - len)
            return scan_fail(sc, line, "list too long");
        len += (size_t)w;
    }
    if (!(*out = strdup(buf)))
        return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: out of memory", sc->source);
    return PST_OK;
}

/* The keys of one layer entry (a mapping) into args[]. */
static int scan_layer_args(cfg_scan *sc, layer_arg *args, size_t *nargs)
{
    for (;;) {
        yaml_event_t kev;
        int rc = scan_next(sc, &kev);
        if (rc)
            return rc;
        size_t line = kev.start_mark.line + 1;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return PST_OK;
        }
        if (kev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&kev);
            return scan_fail(sc, line, "a key must be a plain name, not a list or mapping");
        }
        char *key = strdup((const char *)kev.data.scalar.value);
        yaml_event_delete(&kev);
        if (!key)
            return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: out of memory", sc->source);
        size_t plen = path_push(sc, key);
        if (sc->find && !sc->found_line && strcmp(sc->path, sc->find) == 0)
            sc->found_line = line;
        for (size_t i = 0; i < *nargs; i++)
            if (strcmp(args[i].key, key) == 0) {
                free(key);
                return scan_fail(sc, line, "given twice");
            }
        if (*nargs == CFG_LAYER_ARGS) {
            free(key);
            return scan_fail(sc, line, "too many keys");
        }
        layer_arg *a = &args[(*nargs)++];
        a->key = key;
        a->text = NULL; /* freed with the entry's args should the value fail to scan */
        a->line = line;
        yaml_event_t vev;
        if ((rc = scan_next(sc, &vev)))
            return rc;
        size_t vline = vev.start_mark.line + 1;
        if (vev.type == YAML_SCALAR_EVENT) {
            a->text = strdup((const char *)vev.data.scalar.value);
            yaml_event_delete(&vev);
            if (!a->text)
                return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: out of memory", sc->source);
        } else if (vev.type == YAML_SEQUENCE_START_EVENT && strcmp(key, "inputs") == 0) {
            yaml_event_delete(&vev);
            if ((rc = scan_name_list(sc, &a->text)))
                return rc;
        } else {
            yaml_event_type_t t = vev.type;
            yaml_event_delete(&vev);
            if (t == YAML_ALIAS_EVENT)
                return scan_fail(sc, vline, "aliases (*name) are not supported in job files");
            return scan_fail(sc, vline, "expected a single value, got a %s",
                             t == YAML_SEQUENCE_START_EVENT ? "list" : "mapping");
        }
        sc->path[plen] = '\0';
    }
}

/* Builds a layer entry from its keys: the type first (default dense), then every
 * other key in the order written. */
static int scan_layer_build(cfg_scan *sc, layer_arg *args, size_t nargs, ml_layer_spec *L)
{
    char why[sizeof sc->err->msg];
    memset(L, 0, sizeof *L);
    const ml_layer_ops *ops = ml_registry_find(sc->reg, "dense");
    if (!ops)
        ops = ml_registry_at(sc->reg, 0);
    for (size_t i = 0; i < nargs; i++) {
        if (strcmp(args[i].key, "type") != 0)
            continue;
        if (!(ops = ml_registry_find(sc->reg, args[i].text))) {
            path_push(sc, "type");
            return scan_fail(sc, args[i].line, "%s",
                             type_why(sc->reg, args[i].text, why, sizeof why));
        }
    }
    ml_layer_spec_init(L, ops);
    for (size_t i = 0; i < nargs; i++) {
        if (strcmp(args[i].key, "type") == 0)
            continue;
        int rc = set_layer_key(sc->reg, L, args[i].key, args[i].text, why, sizeof why);
        if (rc == 1) {
            char known[320];
            layer_key_list(ops, known, sizeof known);
            return pst_err_set(sc->err, PST_ERR_CONFIG, "%s:%zu: unknown key '%s.%s' (known: "
                               "%s)", sc->source, args[i].line, sc->path, args[i].key, known);
        }
        if (rc == -2)
            return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: out of memory", sc->source);
        if (rc) {
            path_push(sc, args[i].key);
            return scan_fail(sc, args[i].line, "%s", why);
        }
    }
    return PST_OK;
}

/* model.layers: a list of mappings whose keys depend on each entry's type. */
static int scan_layers(cfg_scan *sc, yaml_event_t *ev)
{
    size_t line = ev->start_mark.line + 1;
    yaml_event_type_t type = ev->type;
    if (type != YAML_SEQUENCE_START_EVENT) {
        int rc;
        if (type == YAML_SCALAR_EVENT)
            rc = scan_fail(sc, line, "expected a list, got '%s'",
                           (const char *)ev->data.scalar.value);
        else if (type == YAML_ALIAS_EVENT)
            rc = scan_fail(sc, line, "aliases (*name) are not supported in job files");
        else
            rc = scan_fail(sc, line, "expected a list, got a mapping");
        yaml_event_delete(ev);
        return rc;
    }
    yaml_event_delete(ev);
    for (unsigned long i = 0;; i++) {
        yaml_event_t e;
        int rc = scan_next(sc, &e);
        if (rc)
            return rc;
        if (e.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&e);
            return PST_OK;
        }
        char comp[24];
        snprintf(comp, sizeof comp, "%lu", i);
        size_t plen = path_push(sc, comp);
        size_t eline = e.start_mark.line + 1;
        yaml_event_type_t et = e.type;
        const char *text = et == YAML_SCALAR_EVENT ? (const char *)e.data.scalar.value : "";
        if (et != YAML_MAPPING_START_EVENT) {
            if (et == YAML_ALIAS_EVENT)
                rc = scan_fail(sc, eline, "aliases (*name) are not supported in job files");
            else if (et == YAML_SCALAR_EVENT)
                rc = scan_fail(sc, eline, "expected a mapping of keys, got '%s'", text);
            else
                rc = scan_fail(sc, eline, "expected a mapping of keys, got a list");
            yaml_event_delete(&e);
            return rc;
        }
        yaml_event_delete(&e);
        if (sc->nlayers == sc->layers_cap) {
            unsigned cap = sc->layers_cap ? 2 * sc->layers_cap : 8;
            ml_layer_spec *p = realloc(sc->layers, cap * sizeof *p);
            if (!p)
                return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: out of memory", sc->source);
            sc->layers = p;
            sc->layers_cap = cap;
        }
        layer_arg args[CFG_LAYER_ARGS];
        size_t nargs = 0;
        rc = scan_layer_args(sc, args, &nargs);
        if (!rc) {
            ml_layer_spec *L = &sc->layers[sc->nlayers];
            rc = scan_layer_build(sc, args, nargs, L);
            if (!rc)
                sc->nlayers++;
            else
                ml_layer_spec_fini(L);
        }
        free_args(args, nargs);
        if (rc)
            return rc;
        sc->path[plen] = '\0';
    }
}

static int scan_node(cfg_scan *sc, const cyaml_schema_value_t *v, yaml_event_t *ev);
static int scan_layers(cfg_scan *sc, yaml_event_t *ev);

static int scan_mapping(cfg_scan *sc, const cyaml_schema_field_t *fields)
{
    uint64_t seen = 0; /* bit i: fields[i] already given in this mapping */
    for (;;) {
        yaml_event_t kev;
        int rc = scan_next(sc, &kev);
        if (rc)
            return rc;
        size_t line = kev.start_mark.line + 1;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            return PST_OK;
        }
        if (kev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&kev);
            return scan_fail(sc, line, "a key must be a plain name, not a list or mapping");
        }
        const char *key = (const char *)kev.data.scalar.value;
        const cyaml_schema_field_t *f = field_find(fields, key);
        if (!f) {
            char known[320];
            field_list(fields, known, sizeof known);
            rc = pst_err_set(sc->err, PST_ERR_CONFIG, "%s:%zu: unknown key '%s%s%s' (known: %s)",
                             sc->source, line, sc->path, sc->path[0] ? "." : "", key, known);
            yaml_event_delete(&kev);
            return rc;
        }
        size_t idx = (size_t)(f - fields);
        assert(idx < 64);
        size_t plen = path_push(sc, key);
        yaml_event_delete(&kev);
        if (sc->find && !sc->found_line && strcmp(sc->path, sc->find) == 0)
            sc->found_line = line;
        if (seen & (UINT64_C(1) << idx))
            return scan_fail(sc, line, "given twice");
        seen |= UINT64_C(1) << idx;
        assert(sc->nset < CFG_MAX_SET);
        sc->set[sc->nset++] = f;
        yaml_event_t vev;
        if ((rc = scan_next(sc, &vev)) ||
            (rc = f == FIELD_LAYERS ? scan_layers(sc, &vev) : scan_node(sc, &f->value, &vev)))
            return rc;
        sc->path[plen] = '\0';
    }
}

static int scan_list(cfg_scan *sc, const cyaml_schema_value_t *entry)
{
    for (unsigned long i = 0;; i++) {
        yaml_event_t ev;
        int rc = scan_next(sc, &ev);
        if (rc)
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return PST_OK;
        }
        char comp[24];
        snprintf(comp, sizeof comp, "%lu", i);
        size_t plen = path_push(sc, comp);
        if ((rc = scan_node(sc, entry, &ev)))
            return rc;
        sc->path[plen] = '\0';
    }
}

/* Checks the node that starts with *ev (consumed here) against v. Recursion follows the
 * schema, which is three levels deep, not the document: a mismatch stops the scan. */
static int scan_node(cfg_scan *sc, const cyaml_schema_value_t *v, yaml_event_t *ev)
{
    size_t line = ev->start_mark.line + 1;
    yaml_event_type_t type = ev->type;
    int rc = PST_OK;
    if (type == YAML_SCALAR_EVENT) {
        const char *text = (const char *)ev->data.scalar.value;
        if (v->type == CYAML_MAPPING || v->type == CYAML_SEQUENCE) {
            rc = scan_fail(sc, line, "expected %s, got '%s'", shape_name(v), text);
        } else {
            cfg_scalar val;
            char why[sizeof sc->err->msg];
            if (parse_scalar(v, text, &val, why, sizeof why))
                rc = scan_fail(sc, line, "%s", why);
        }
        yaml_event_delete(ev);
        return rc;
    }
    yaml_event_delete(ev);
    switch (type) {
    case YAML_MAPPING_START_EVENT:
        if (v->type != CYAML_MAPPING)
            return scan_fail(sc, line, "expected %s, got a mapping", shape_name(v));
        return scan_mapping(sc, v->mapping.fields);
    case YAML_SEQUENCE_START_EVENT:
        if (v->type != CYAML_SEQUENCE)
            return scan_fail(sc, line, "expected %s, got a list", shape_name(v));
        return scan_list(sc, v->sequence.entry);
    case YAML_ALIAS_EVENT:
        return scan_fail(sc, line, "aliases (*name) are not supported in job files");
    default: return scan_fail(sc, line, "unexpected YAML event %d", (int)type);
    }
}

/* Pass 1 over the whole stream. *empty: no document, or an empty one (all defaults). */
static int scan_job(cfg_scan *sc, const char *yaml, size_t len, int *empty)
{
    *empty = 0;
    if (!yaml_parser_initialize(&sc->parser))
        return pst_err_set(sc->err, PST_ERR_NOMEM, "%s: cannot start the YAML parser",
                           sc->source);
    yaml_parser_set_input_string(&sc->parser, (const unsigned char *)yaml, len);
    int rc;
    yaml_event_t ev;
    if ((rc = scan_next(sc, &ev)))
        goto cleanup;
    assert(ev.type == YAML_STREAM_START_EVENT);
    yaml_event_delete(&ev);
    if ((rc = scan_next(sc, &ev)))
        goto cleanup;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        *empty = 1;
        goto cleanup;
    }
    assert(ev.type == YAML_DOCUMENT_START_EVENT);
    yaml_event_delete(&ev);
    if ((rc = scan_next(sc, &ev)))
        goto cleanup;
    if (ev.type == YAML_SCALAR_EVENT && ev.data.scalar.length == 0) {
        yaml_event_delete(&ev);
        *empty = 1;
    } else if (ev.type == YAML_MAPPING_START_EVENT) {
        if ((rc = scan_node(sc, &job_value, &ev)))
            goto cleanup;
    } else {
        size_t line = ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        rc = scan_fail(sc, line,
                       "a job is a mapping of sections (name, seed, data, model, optimizer, "
                       "train, output)");
        goto cleanup;
    }
    if ((rc = scan_next(sc, &ev)))
        goto cleanup;
    assert(ev.type == YAML_DOCUMENT_END_EVENT);
    yaml_event_delete(&ev);
    if ((rc = scan_next(sc, &ev)))
        goto cleanup;
    if (ev.type != YAML_STREAM_END_EVENT)
        rc = scan_fail(sc, ev.start_mark.line + 1, "a job file holds one YAML document");
    yaml_event_delete(&ev);
cleanup:
    yaml_parser_delete(&sc->parser);
    /* A key or value quoted in a message may span lines (a folded plain scalar, a quoted
     * "\n"); the message stays one line. */
    if (rc && sc->err)
        for (char *c = sc->err->msg; *c; c++)
            if (*c == '\n' || *c == '\r')
                *c = ' ';
    return rc;
}

/* ---- Pass 2: libcyaml, its log captured -------------------------------------------- */

/* libcyaml logs an error as one problem line, then "Backtrace:" and one line per level,
 * innermost first: "  in mapping field 'lr' (line: 3, column: 7)",
 * "  in sequence entry '2' (line: ...)" (1-based), "  in mapping (line: ...)". */
typedef struct {
    char problem[256];
    char where[CFG_PATH_MAX]; /* dotted path rebuilt from the backtrace */
    unsigned line;            /* innermost line reported, 0 if none */
    int in_backtrace;
} cfg_cylog;

static void cylog_prepend(cfg_cylog *lg, const char *comp)
{
    size_t nc = strlen(comp), nw = strlen(lg->where);
    if (nc + 1 + nw >= sizeof lg->where)
        return; /* cannot happen for this schema's paths; keep the inner part */
    memmove(lg->where + nc + (nw ? 1 : 0), lg->where, nw + 1);
    memcpy(lg->where, comp, nc);
    if (nw)
        lg->where[nc] = '.';
}

static void cylog_capture(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    cfg_cylog *lg = ctx;
    if (level < CYAML_LOG_ERROR)
        return;
    char line[256];
    vsnprintf(line, sizeof line, fmt, args);
    line[strcspn(line, "\n")] = '\0';
    const char *m = line;
    if (strncmp(m, "Load: ", 6) == 0)
        m += 6;
    if (strcmp(m, "Backtrace:") == 0) {
        lg->in_backtrace = 1;
        return;
    }
    if (!lg->in_backtrace) {
        if (!lg->problem[0])
            snprintf(lg->problem, sizeof lg->problem, "%s", m);
        return;
    }
    char key[64];
    unsigned n;
    if (sscanf(m, " in mapping field '%63[^']'", key) == 1) {
        cylog_prepend(lg, key);
    } else if (sscanf(m, " in sequence entry '%u'", &n) == 1 && n > 0) {
        snprintf(key, sizeof key, "%u", n - 1);
        cylog_prepend(lg, key);
    }
    const char *at = strstr(m, "(line: ");
    unsigned l;
    if (!lg->line && at && sscanf(at, "(line: %u", &l) == 1)
        lg->line = l;
}

static cyaml_config_t cy_config(cfg_cylog *lg)
{
    cyaml_config_t c = {
        .log_fn = lg ? cylog_capture : NULL,
        .log_ctx = lg,
        .mem_fn = cyaml_mem,
        .mem_ctx = NULL,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_NO_ALIAS,
    };
    return c;
}

/* ---- Pass 3: defaults for what the file left out ------------------------------------ */

static int fill_fields(const cyaml_schema_field_t *fields, char *dst, const char *tmpl,
                       const cfg_scan *sc)
{
    for (const cyaml_schema_field_t *f = fields; f->key; f++) {
        char *d = dst + f->data_offset;
        const char *t = tmpl + f->data_offset;
        if (f->value.type == CYAML_MAPPING) {
            int rc = fill_fields(f->value.mapping.fields, d, t, sc);
            if (rc)
                return rc;
            continue;
        }
        /* Lists have no default but empty; layers get theirs as they are read. */
        if (f->value.type == CYAML_SEQUENCE || f->value.type == CYAML_IGNORE ||
            field_was_set(sc, f))
            continue;
        if (f->value.type == CYAML_STRING) {
            const char *s;
            memcpy(&s, t, sizeof s);
            if (s) {
                cfg_scalar val = {.s = s};
                if (store_scalar(&f->value, d, &val))
                    return PST_ERR_NOMEM;
            }
            continue;
        }
        memcpy(d, t, f->value.data_size);
    }
    return PST_OK;
}

static char *default_dir(const char *name)
{
    size_t n = strlen("runs/") + strlen(name) + 1;
    char *s = cyaml_mem(NULL, NULL, n);
    if (s)
        snprintf(s, n, "runs/%s", name);
    return s;
}

static int fill_defaults(cfg_job *job, const cfg_scan *sc)
{
    cfg_job tmpl;
    memset(&tmpl, 0, sizeof tmpl);
    tmpl.name = (char *)"pstrain-job"; /* only read: fill_fields copies it */
    tmpl.seed = 42;
    tmpl.data.format = CFG_FMT_IDX;
    tmpl.data.task = CFG_TASK_CLASSIFY;
    tmpl.data.label_index = -1;
    tmpl.data.header = CFG_HEADER_AUTO;
    tmpl.data.scale = CFG_SCALE_NONE;
    tmpl.model.spec.loss = ML_LOSS_CCE;
    tmpl.model.spec.init = ML_INIT_AUTO;
    opt_config_default(&tmpl.optimizer, job->optimizer.kind);
    tmpl.train.batch_size = 32;
    tmpl.train.epochs = 1;
    tmpl.train.threads = 1;
    tmpl.train.shuffle = 1;
    tmpl.train.log_every = 0;
    tmpl.cluster.servers = 2;
    tmpl.cluster.workers = 2;
    tmpl.cluster.consistency = CFG_CONS_SSP;
    tmpl.cluster.staleness = 2;
    tmpl.cluster.timeout_s = 60;
    tmpl.cluster.heartbeat_ms = 500;
    tmpl.cluster.heartbeat_timeout_s = 10;
    tmpl.checkpoint.enabled = 1;
    tmpl.checkpoint.keep = 2;
    int rc = fill_fields(job_fields, (char *)job, (const char *)&tmpl, sc);
    if (rc)
        return rc;
    if (!field_was_set(sc, FIELD_OUTPUT_DIR) && job->name) {
        assert(!job->output.dir);
        if (!(job->output.dir = default_dir(job->name)))
            return PST_ERR_NOMEM;
    }
    return PST_OK;
}

/* The line of the key a cfg_job_check message starts with ("train.epochs: must be ..."),
 * found by scanning the (already valid) text again; 0 when the file does not set it. */
static size_t key_line(const ml_registry *reg, const char *yaml, size_t len, const char *msg)
{
    char key[CFG_PATH_MAX];
    size_t n = strcspn(msg, ": ");
    if (n == 0 || n >= sizeof key || msg[n] != ':')
        return 0;
    memcpy(key, msg, n);
    key[n] = '\0';
    pst_err scratch;
    cfg_scan sc;
    memset(&sc, 0, sizeof sc);
    sc.source = "";
    sc.err = &scratch;
    sc.reg = reg;
    sc.find = key;
    int empty;
    int rc = scan_job(&sc, yaml, len, &empty);
    scan_fini(&sc);
    return rc == PST_OK ? sc.found_line : 0;
}

/* ---- Load / free ------------------------------------------------------------------- */

void cfg_job_free(cfg_job *job)
{
    if (!job)
        return;
    ml_model_spec_fini(&job->model.spec);
    cyaml_config_t c = cy_config(NULL);
    cyaml_free(&c, &job_value, job, 0);
}

int cfg_job_load_string(cfg_job **out, const char *yaml, size_t len, const char *source,
                        pst_err *err)
{
    return cfg_job_load_string_reg(out, NULL, yaml, len, source, err);
}

int cfg_job_load_string_reg(cfg_job **out, const ml_registry *reg, const char *yaml, size_t len,
                            const char *source, pst_err *err)
{
    assert(out && yaml && source);
    *out = NULL;
    cfg_job *job = NULL;
    cfg_scan sc;
    memset(&sc, 0, sizeof sc);
    sc.source = source;
    sc.err = err;
    sc.reg = reg ? reg : ml_registry_builtin();

    int empty;
    int rc = scan_job(&sc, yaml, len, &empty);
    if (rc)
        goto cleanup;

    if (!empty) {
        cfg_cylog lg;
        memset(&lg, 0, sizeof lg);
        cyaml_config_t c = cy_config(&lg);
        cyaml_err_t ce = cyaml_load_data((const uint8_t *)yaml, len, &c, &job_value,
                                         (cyaml_data_t **)&job, NULL);
        if (ce != CYAML_OK) {
            job = NULL;
            rc = ce == CYAML_ERR_OOM ? PST_ERR_NOMEM : PST_ERR_CONFIG;
            const char *what = lg.problem[0] ? lg.problem : cyaml_strerror(ce);
            if (lg.line)
                pst_err_set(err, rc, "%s:%u: %s%s%s", source, lg.line, lg.where,
                            lg.where[0] ? ": " : "", what);
            else
                pst_err_set(err, rc, "%s: %s%s%s", source, lg.where, lg.where[0] ? ": " : "",
                            what);
            goto cleanup;
        }
    }
    /* libcyaml returns no struct for a document that sets nothing. */
    if (!job) {
        if (!(job = cyaml_mem(NULL, NULL, sizeof *job))) {
            rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", source);
            goto cleanup;
        }
        memset(job, 0, sizeof *job);
    }
    /* The layers pass 1 read move into the job. */
    job->model.reg = sc.reg;
    job->model.spec.layers = sc.layers;
    job->model.spec.nlayers = sc.nlayers;
    sc.layers = NULL;
    sc.nlayers = sc.layers_cap = 0;
    if ((rc = fill_defaults(job, &sc))) {
        pst_err_set(err, rc, "%s: out of memory", source);
        goto cleanup;
    }
    if ((rc = cfg_job_check(job, err))) {
        size_t line = err ? key_line(sc.reg, yaml, len, err->msg) : 0;
        if (line)
            pst_err_prefix(err, "%s:%zu", source, line);
        else
            pst_err_prefix(err, "%s", source);
        goto cleanup;
    }
    *out = job;
    job = NULL;
cleanup:
    scan_fini(&sc);
    cfg_job_free(job);
    return rc;
}

/* Reads in chunks rather than by size, so pipes (/dev/stdin) work and a directory fails
 * with the read's own error (EISDIR). */
int cfg_job_load_file(cfg_job **out, const char *path, pst_err *err)
{
    return cfg_job_load_file_reg(out, NULL, path, err);
}

int cfg_job_load_file_reg(cfg_job **out, const ml_registry *reg, const char *path,
                          pst_err *err)
{
    assert(out && path);
    *out = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = PST_OK;
    FILE *f = fopen(path, "rb");
    if (!f)
        return pst_err_set(err, PST_ERR_IO, "%s: %s", path, strerror(errno));
    for (;;) {
        if (cap - len < 4096) {
            if (cap >= CFG_FILE_MAX) {
                rc = pst_err_set(err, PST_ERR_CONFIG, "%s: over %ld bytes, too large for a job "
                                 "file", path, CFG_FILE_MAX);
                goto cleanup;
            }
            size_t ncap = cap ? 2 * cap : 8192;
            char *nbuf = realloc(buf, ncap + 1);
            if (!nbuf) {
                rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
                goto cleanup;
            }
            buf = nbuf;
            cap = ncap;
        }
        errno = 0;
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (ferror(f)) {
            rc = pst_err_set(err, PST_ERR_IO, "%s: %s", path,
                             errno ? strerror(errno) : "read error");
            goto cleanup;
        }
        if (got == 0 || feof(f))
            break;
    }
    buf[len] = '\0';
    rc = cfg_job_load_string_reg(out, reg, buf, len, path, err);
cleanup:
    free(buf);
    fclose(f);
    return rc;
}

/* ---- Overrides --------------------------------------------------------------------- */

/* Splits off the next dotted component of *p (NUL-terminating it); NULL at the end. */
static char *next_comp(char **p)
{
    if (!*p)
        return NULL;
    char *c = *p;
    char *dot = strchr(c, '.');
    if (dot) {
        *dot = '\0';
        *p = dot + 1;
    } else {
        *p = NULL;
    }
    return c;
}

/* Keeps derived defaults in step when the key they derive from changes, so
 * `--optimizer.name adam` on a file that never set lr gives adam's lr, as
 * `optimizer: {name: adam}` in the file would. Fields the job cannot tell apart from a
 * default (a value equal to it) follow too: the job does not record where values came from. */
static void follow_opt_kind(opt_config *c, opt_kind old)
{
    opt_config was, now;
    opt_config_default(&was, old);
    opt_config_default(&now, c->kind);
    for (const cyaml_schema_field_t *f = opt_fields; f->key; f++) {
        if (f == FIELD_OPT_NAME)
            continue;
        char *p = (char *)c + f->data_offset;
        if (memcmp(p, (const char *)&was + f->data_offset, f->value.data_size) == 0)
            memcpy(p, (const char *)&now + f->data_offset, f->value.data_size);
    }
}

/* A list of scalars from the command line: "5,6,7", "[5, 6, 7]", or "" / "[]" for an
 * empty list. Replaces the whole list; on error the old one stays. */
static int set_scalar_list(const cyaml_schema_field_t *f, char *base, const char *path,
                           const char *value, pst_err *err)
{
    const cyaml_schema_value_t *entry = f->value.sequence.entry;
    char buf[1024];
    if (strlen(value) >= sizeof buf)
        return pst_err_set(err, PST_ERR_CONFIG, "%s: list too long", path);
    const char *v = value;
    while (*v == ' ')
        v++;
    int bracket = *v == '[';
    snprintf(buf, sizeof buf, "%s", v + bracket);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == ' ')
        buf[--n] = '\0';
    if (bracket != (n && buf[n - 1] == ']'))
        return pst_err_set(err, PST_ERR_CONFIG, "%s: '%s' is not a list (e.g. 5,6,7)", path,
                           value);
    if (bracket)
        buf[--n] = '\0';
    size_t count = 0;
    for (char *p = buf; *p; p++)
        count += *p == ',';
    int blank = 1;
    for (char *p = buf; *p && blank; p++)
        blank = *p == ' ';
    count = blank ? 0 : count + 1;
    char *arr = NULL;
    if (count && !(arr = cyaml_mem(NULL, NULL, count * entry->data_size)))
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
    char *item = buf;
    for (size_t i = 0; i < count; i++) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = '\0';
        while (*item == ' ')
            item++;
        size_t il = strlen(item);
        while (il && item[il - 1] == ' ')
            item[--il] = '\0';
        cfg_scalar val;
        char why[sizeof err->msg];
        if (parse_scalar(entry, item, &val, why, sizeof why)) {
            cyaml_mem(NULL, arr, 0);
            return pst_err_set(err, PST_ERR_CONFIG, "%s: entry %zu: %s", path, i, why);
        }
        store_scalar(entry, arr + i * entry->data_size, &val);
        item = comma ? comma + 1 : item + il;
    }
    char *old;
    memcpy(&old, base + f->data_offset, sizeof old);
    if (old)
        cyaml_mem(NULL, old, 0);
    memcpy(base + f->data_offset, &arr, sizeof arr);
    store_uint(base + f->count_offset, f->count_size, count);
    return PST_OK;
}

/* model.layers.<i>.<key>: rest is "<i>.<key>" (or less, an error). */
static int override_layer(cfg_job *job, const char *path, char *rest, const char *value,
                          pst_err *err)
{
    const ml_registry *reg = job->model.reg ? job->model.reg : ml_registry_builtin();
    char *idx = next_comp(&rest);
    if (!idx || !rest)
        return pst_err_set(err, PST_ERR_CONFIG, "%s: name an entry and its key, e.g. "
                           "layers.0.type", path);
    char *end;
    errno = 0;
    unsigned long long i = strtoull(idx, &end, 10);
    if (idx[0] < '0' || idx[0] > '9' || *end || errno == ERANGE)
        return pst_err_set(err, PST_ERR_CONFIG, "%s: '%s' is not an entry index", path, idx);
    ml_model_spec *m = &job->model.spec;
    if (i >= m->nlayers)
        return pst_err_set(err, PST_ERR_CONFIG, "%s: index %llu is past the end (%u entries)",
                           path, i, m->nlayers);
    ml_layer_spec *L = &m->layers[i];
    char *key = next_comp(&rest);
    char why[sizeof err->msg];
    int rc = rest ? 1 : set_layer_key(reg, L, key, value, why, sizeof why);
    if (rc == 1)
        return pst_err_set(err, PST_ERR_CONFIG, "unknown key '%s'", path);
    if (rc == -2)
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
    if (rc)
        return pst_err_set(err, PST_ERR_CONFIG, "%s: %s", path, why);
    return PST_OK;
}

int cfg_override(cfg_job *job, const char *path, const char *value, pst_err *err)
{
    assert(job && path && value);
    char buf[CFG_PATH_MAX];
    if (strlen(path) >= sizeof buf)
        return pst_err_set(err, PST_ERR_CONFIG, "unknown key '%.64s...'", path);
    memcpy(buf, path, strlen(path) + 1);

    const cyaml_schema_field_t *fields = job_fields;
    const cyaml_schema_field_t *f = NULL;
    char *base = (char *)job;
    char *rest = buf;
    for (;;) {
        char *comp = next_comp(&rest);
        if (!comp || !(f = field_find(fields, comp)))
            return pst_err_set(err, PST_ERR_CONFIG, "unknown key '%s'", path);
        if (f->value.type == CYAML_MAPPING) {
            if (!rest) {
                char known[320];
                field_list(f->value.mapping.fields, known, sizeof known);
                return pst_err_set(err, PST_ERR_CONFIG,
                                   "%s: is a section; set one of its keys (%s)", path, known);
            }
            base += f->data_offset;
            fields = f->value.mapping.fields;
            continue;
        }
        if (f->value.type == CYAML_SEQUENCE &&
            f->value.sequence.entry->type != CYAML_MAPPING) {
            if (rest)
                return pst_err_set(err, PST_ERR_CONFIG, "unknown key '%s' (%s is set whole, "
                                   "e.g. %s 5,6,7)", path, f->key, f->key);
            return set_scalar_list(f, base, path, value, err);
        }
        if (f == FIELD_LAYERS)
            return override_layer(job, path, rest, value, err);
        if (rest)
            return pst_err_set(err, PST_ERR_CONFIG, "unknown key '%s'", path);
        break;
    }

    cfg_scalar val;
    char why[sizeof err->msg];
    if (parse_scalar(&f->value, value, &val, why, sizeof why))
        return pst_err_set(err, PST_ERR_CONFIG, "%s: %s", path, why);

    opt_kind old_kind = job->optimizer.kind;
    char *old_dir = NULL; /* "runs/<old name>" when output.dir is still that default */
    if (f == FIELD_JOB_NAME && job->name && job->output.dir) {
        if (!(old_dir = default_dir(job->name)))
            return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        if (strcmp(old_dir, job->output.dir) != 0) {
            cfg_strfree(old_dir);
            old_dir = NULL;
        }
    }
    int rc = store_scalar(&f->value, base + f->data_offset, &val);
    if (rc == PST_OK && f == FIELD_OPT_NAME)
        follow_opt_kind(&job->optimizer, old_kind);
    if (rc == PST_OK && old_dir && job->name) {
        char *dir = default_dir(job->name);
        if (dir) {
            cfg_strfree(job->output.dir);
            job->output.dir = dir;
        } else {
            rc = PST_ERR_NOMEM;
        }
    }
    cfg_strfree(old_dir);
    if (rc)
        return pst_err_set(err, rc, "%s: out of memory", path);
    return PST_OK;
}

/* ---- Checks ------------------------------------------------------------------------ */

/* Enum fields hold one of their names (a job built or edited in code might not). */
static int check_enums(const cyaml_schema_field_t *fields, const char *base, const char *prefix,
                       pst_err *err)
{
    for (const cyaml_schema_field_t *f = fields; f->key; f++) {
        char path[CFG_PATH_MAX];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", f->key);
        const char *p = base + f->data_offset;
        if (f->value.type == CYAML_MAPPING) {
            int rc = check_enums(f->value.mapping.fields, p, path, err);
            if (rc)
                return rc;
        } else if (f->value.type == CYAML_SEQUENCE) {
            const cyaml_schema_value_t *entry = f->value.sequence.entry;
            uint64_t n = entry->type == CYAML_MAPPING
                             ? load_uint(base + f->count_offset, f->count_size)
                             : 0; /* a list of numbers has no enum */
            const char *arr;
            memcpy(&arr, p, sizeof arr);
            for (uint64_t i = 0; i < n; i++) {
                char ip[CFG_PATH_MAX + 24];
                snprintf(ip, sizeof ip, "%s.%" PRIu64, path, i);
                int rc = check_enums(entry->mapping.fields, arr + i * entry->data_size, ip, err);
                if (rc)
                    return rc;
            }
        } else if (f->value.type == CYAML_ENUM) {
            int64_t v = load_int(p, f->value.data_size);
            if (!enum_name(f->value.enumeration.strings, f->value.enumeration.count, v))
                return pst_err_set(err, PST_ERR_CONFIG, "%s: invalid value %" PRId64, path, v);
        }
    }
    return PST_OK;
}

/* The fine-tuning keys: data.classes, data.limit and the layers' trainable and lr_mult. */
static int check_finetune(const cfg_job *job, pst_err *err)
{
    const int E = PST_ERR_CONFIG;
    const cfg_data *d = &job->data;
    if (d->classes_count > 0 && d->task != CFG_TASK_CLASSIFY)
        return pst_err_set(err, E, "data.classes: needs data.task classify");
    for (unsigned i = 0; i < d->classes_count; i++) {
        int c = d->classes[i];
        if (c < 0)
            return pst_err_set(err, E, "data.classes: entry %u: class ids are >= 0, got %d", i,
                               c);
        if (d->num_classes > 0 && c >= d->num_classes)
            return pst_err_set(err, E, "data.classes: entry %u: class %d, but data.num_classes "
                               "is %d", i, c, d->num_classes);
        for (unsigned j = 0; j < i; j++)
            if (d->classes[j] == c)
                return pst_err_set(err, E, "data.classes: class %d is listed twice", c);
    }
    if (d->limit < 0)
        return pst_err_set(err, E, "data.limit: must be >= 0 (0 = all), got %d", d->limit);
    const ml_model_spec *m = &job->model.spec;
    unsigned ntrain = 0;
    for (unsigned i = 0; i < m->nlayers; i++) {
        const ml_layer_spec *L = &m->layers[i];
        const char *t = L->ops->name;
        const char *an = strchr("aeiou", t[0]) ? "an" : "a";
        if (!(L->lr_mult >= 0.0f) || !isfinite(L->lr_mult))
            return pst_err_set(err, E, "model.layers.%u.lr_mult: must be >= 0 (0 freezes the "
                               "layer), got %g", i, (double)L->lr_mult);
        if (!L->ops->has_params && !L->trainable)
            return pst_err_set(err, E, "model.layers.%u.trainable: %s %s layer has no "
                               "parameters to freeze", i, an, t);
        if (!L->ops->has_params && L->lr_mult != 1.0f)
            return pst_err_set(err, E, "model.layers.%u.lr_mult: %s %s layer has no "
                               "parameters to scale", i, an, t);
        ntrain += L->ops->has_params && L->trainable && L->lr_mult > 0.0f;
    }
    if (m->nlayers > 0 && ntrain == 0)
        return pst_err_set(err, E, "model.layers: every dense layer is frozen (trainable: false "
                           "or lr_mult: 0 on every layer with parameters); nothing would train");
    return PST_OK;
}

int cfg_job_check(const cfg_job *job, pst_err *err)
{
    assert(job);
    const int E = PST_ERR_CONFIG;
    int rc = check_enums(job_fields, (const char *)job, "", err);
    if (rc)
        return rc;
    if (!job->name || !job->name[0])
        return pst_err_set(err, E, "name: must be set");

    const cfg_data *d = &job->data;
    if (!d->train)
        return pst_err_set(err, E, "data.train: must be set (the training data file)");
    if (d->format == CFG_FMT_IDX && !d->train_labels)
        return pst_err_set(err, E, "data.train_labels: must be set for format idx");
    if (d->test_labels && !d->test)
        return pst_err_set(err, E, "data.test_labels: set without data.test");
    if (d->format == CFG_FMT_IDX && d->test && !d->test_labels)
        return pst_err_set(err, E, "data.test_labels: must be set with data.test for format idx");
    if (d->num_classes < 0)
        return pst_err_set(err, E, "data.num_classes: must be >= 0 (0 = from the data), got %d",
                           d->num_classes);
    if (d->label_index < -1)
        return pst_err_set(err, E, "data.label_index: must be >= -1 (-1 = last), got %d",
                           d->label_index);
    if (d->delimiter && strlen(d->delimiter) != 1)
        return pst_err_set(err, E, "data.delimiter: must be exactly one character, got '%s'",
                           d->delimiter);
    if (d->dim < 0)
        return pst_err_set(err, E, "data.dim: must be >= 0 (0 = from the data), got %d", d->dim);
    if (!(d->validation_split >= 0.0 && d->validation_split < 1.0))
        return pst_err_set(err, E, "data.validation_split: must be in [0, 1), got %g",
                           d->validation_split);

    const ml_model_spec *m = &job->model.spec;
    if (m->nlayers == 0 || !m->layers)
        return pst_err_set(err, E, "model.layers: must list at least one layer");
    if ((rc = ml_model_spec_check(m, err)))
        return rc;
    const unsigned last = m->nlayers - 1;
    const char *ends_in = ml_activation_name(ml_layer_spec_out_act(&m->layers[last]));
    if (m->loss != ML_LOSS_MSE && d->task != CFG_TASK_CLASSIFY)
        return pst_err_set(err, E, "model.loss: %s needs data.task classify (regression: mse)",
                           ml_loss_name(m->loss));
    if (m->loss == ML_LOSS_CCE && strcmp(ends_in, "softmax") != 0)
        return pst_err_set(err, E,
                           "model.loss: categorical_crossentropy needs a softmax output, but "
                           "model.layers.%u ends in %s", last, ends_in);
    if (m->loss == ML_LOSS_BCE && strcmp(ends_in, "sigmoid") != 0)
        return pst_err_set(err, E,
                           "model.loss: binary_crossentropy needs a sigmoid output, but "
                           "model.layers.%u ends in %s", last, ends_in);
    /* With data.classes the labels are renumbered 0..k-1: k is the output's width, set by
     * the width key (dense: units) of the last layer that has one. */
    int want_units = d->classes_count > 0 ? (int)d->classes_count : d->num_classes;
    for (unsigned i = m->nlayers; m->loss == ML_LOSS_CCE && want_units > 0 && i-- > 0;) {
        const ml_layer_spec *L = &m->layers[i];
        if (!L->ops->width_key)
            continue;
        int64_t units = L->val[ml_layer_key_find(L->ops, L->ops->width_key)].i;
        if (units != want_units)
            return pst_err_set(err, E,
                               "model.layers.%u.%s: the output layer has %" PRId64 " units but "
                               "%s is %d", i, L->ops->width_key, units,
                               d->classes_count > 0 ? "the length of data.classes"
                                                    : "data.num_classes",
                               want_units);
        break;
    }
    if ((rc = check_finetune(job, err)))
        return rc;

    if ((rc = opt_config_check(&job->optimizer, err))) {
        return rc;
    }

    const cfg_train *t = &job->train;
    if (t->batch_size < 1)
        return pst_err_set(err, E, "train.batch_size: must be >= 1, got %d", t->batch_size);
    if (t->epochs < 1)
        return pst_err_set(err, E, "train.epochs: must be >= 1, got %d", t->epochs);
    if (t->threads < 1)
        return pst_err_set(err, E, "train.threads: must be >= 1, got %d", t->threads);
    if (t->log_every < 0)
        return pst_err_set(err, E, "train.log_every: must be >= 0 (0 = per epoch), got %d",
                           t->log_every);
    if (!job->output.dir)
        return pst_err_set(err, E, "output.dir: must be set");

    const cfg_cluster *c = &job->cluster;
    if (c->servers < 1 || c->servers > 64)
        return pst_err_set(err, E, "cluster.servers: must be in [1, 64], got %d", c->servers);
    if (c->workers < 1 || c->workers > 4096)
        return pst_err_set(err, E, "cluster.workers: must be in [1, 4096], got %d", c->workers);
    if (c->staleness < 0)
        return pst_err_set(err, E, "cluster.staleness: must be >= 0, got %d", c->staleness);
    if (c->timeout_s < 1)
        return pst_err_set(err, E, "cluster.timeout_s: must be >= 1, got %d", c->timeout_s);
    if (c->heartbeat_ms < 10 || c->heartbeat_ms > 60000)
        return pst_err_set(err, E, "cluster.heartbeat_ms: must be in [10, 60000], got %d",
                           c->heartbeat_ms);
    if (c->heartbeat_timeout_s < 1 || (int64_t)c->heartbeat_timeout_s * 1000 < 2 * c->heartbeat_ms)
        return pst_err_set(err, E, "cluster.heartbeat_timeout_s: must be >= 1 and at least two "
                           "heartbeats (%d ms each), got %d", c->heartbeat_ms,
                           c->heartbeat_timeout_s);
    if (c->max_restarts < 0 || c->max_restarts > 1000)
        return pst_err_set(err, E, "cluster.max_restarts: must be in [0, 1000], got %d",
                           c->max_restarts);
    if (c->metrics_port < 0 || c->metrics_port + c->servers > 65535)
        return pst_err_set(err, E, "cluster.metrics_port: must be 0 (off) or a port with room "
                           "for the %d servers after it (<= %d), got %d", c->servers,
                           65535 - c->servers, c->metrics_port);

    const cfg_checkpoint *k = &job->checkpoint;
    if (k->every_steps < 0)
        return pst_err_set(err, E, "checkpoint.every_steps: must be >= 0 (0 = off), got %d",
                           k->every_steps);
    if (!(k->every_seconds >= 0.0))
        return pst_err_set(err, E, "checkpoint.every_seconds: must be >= 0 (0 = off), got %g",
                           k->every_seconds);
    if (k->keep < 1)
        return pst_err_set(err, E, "checkpoint.keep: must be >= 1, got %d", k->keep);
    return PST_OK;
}

/* ---- Printing ---------------------------------------------------------------------- */

/* The shortest %g form that reads back to the same value (strtof for 4-byte fields). */
static void fmt_float(char *buf, size_t n, double x, uint32_t size)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, x);
        if (size == sizeof(float) ? strtof(buf, NULL) == (float)x : strtod(buf, NULL) == x)
            return;
    }
}

/* Double-quoted YAML scalar: the escapes cover every byte that could end or bend it. */
static void put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static int print_fields(FILE *f, const cyaml_schema_field_t *fields, const char *base, int indent,
                        int first_inline, pst_err *err);

static int print_scalar(FILE *f, const cyaml_schema_field_t *fd, const char *p, pst_err *err)
{
    const cyaml_schema_value_t *v = &fd->value;
    char num[40];
    switch (v->type) {
    case CYAML_INT: fprintf(f, "%" PRId64, load_int(p, v->data_size)); break;
    case CYAML_UINT: fprintf(f, "%" PRIu64, load_uint(p, v->data_size)); break;
    case CYAML_BOOL: fputs(load_int(p, v->data_size) ? "true" : "false", f); break;
    case CYAML_FLOAT:
        fmt_float(num, sizeof num, load_float(p, v->data_size), v->data_size);
        fputs(num, f);
        break;
    case CYAML_ENUM: {
        int64_t x = load_int(p, v->data_size);
        const char *name = enum_name(v->enumeration.strings, v->enumeration.count, x);
        if (!name)
            return pst_err_set(err, PST_ERR_ARG, "%s: invalid value %" PRId64, fd->key, x);
        fputs(name, f);
        break;
    }
    case CYAML_STRING: {
        const char *s;
        memcpy(&s, p, sizeof s);
        if (s)
            put_string(f, s);
        else
            fputs("null", f);
        break;
    }
    default: assert(!"scalar type the schema does not use");
    }
    fputc('\n', f);
    return PST_OK;
}

/* A list of numbers in flow style: " [5, 6, 7]". */
static void print_scalar_list(FILE *f, const cyaml_schema_field_t *fd, const char *base)
{
    const cyaml_schema_value_t *entry = fd->value.sequence.entry;
    uint64_t n = load_uint(base + fd->count_offset, fd->count_size);
    const char *arr;
    memcpy(&arr, base + fd->data_offset, sizeof arr);
    fputs(" [", f);
    for (uint64_t i = 0; i < n; i++) {
        const char *q = arr + i * entry->data_size;
        fputs(i ? ", " : "", f);
        if (entry->type == CYAML_INT) {
            fprintf(f, "%" PRId64, load_int(q, entry->data_size));
        } else {
            assert(entry->type == CYAML_UINT);
            fprintf(f, "%" PRIu64, load_uint(q, entry->data_size));
        }
    }
    fputs("]\n", f);
}

/* model.layers as a list of mappings: type, the type's keys, name, inputs (only when
 * given), trainable, lr_mult -- for the built-in types the text pstrain 0.1 printed, so
 * job fingerprints (cfg_job_hash) stay what they were. */
static void print_layers(FILE *f, const ml_model_spec *m, int indent)
{
    fputs(m->nlayers ? "\n" : " []\n", f);
    char num[40];
    for (unsigned l = 0; l < m->nlayers; l++) {
        const ml_layer_spec *L = &m->layers[l];
        int in = indent + 4;
        fprintf(f, "%*s- type: %s\n", indent + 2, "", L->ops->name);
        for (int k = 0; k < L->ops->nkeys; k++) {
            const ml_layer_key *K = &L->ops->keys[k];
            const ml_value *v = &L->val[k];
            fprintf(f, "%*s%s: ", in, "", K->name);
            switch (K->kind) {
            case ML_KEY_INT: fprintf(f, "%" PRId64, v->i); break;
            case ML_KEY_BOOL: fputs(v->i ? "true" : "false", f); break;
            case ML_KEY_FLOAT:
                fmt_float(num, sizeof num, v->f, sizeof(double));
                fputs(num, f);
                break;
            case ML_KEY_ENUM: fputs(K->enum_name((int)v->i), f); break;
            case ML_KEY_STRING:
                if (v->s)
                    put_string(f, v->s);
                else
                    fputs("null", f);
                break;
            }
            fputc('\n', f);
        }
        fprintf(f, "%*sname: ", in, "");
        if (L->name)
            put_string(f, L->name);
        else
            fputs("null", f);
        fputc('\n', f);
        if (L->ninputs) {
            fprintf(f, "%*sinputs: [", in, "");
            for (unsigned i = 0; i < L->ninputs; i++) {
                fputs(i ? ", " : "", f);
                put_string(f, L->inputs[i]);
            }
            fputs("]\n", f);
        }
        fmt_float(num, sizeof num, L->lr_mult, sizeof(float));
        fprintf(f, "%*strainable: %s\n%*slr_mult: %s\n", in, "", L->trainable ? "true" : "false",
                in, "", num);
    }
}

/* first_inline: the first key goes on the current line (after a list's "- "). */
static int print_fields(FILE *f, const cyaml_schema_field_t *fields, const char *base, int indent,
                        int first_inline, pst_err *err)
{
    for (const cyaml_schema_field_t *fd = fields; fd->key; fd++) {
        const char *p = base + fd->data_offset;
        fprintf(f, "%*s%s:", (fd == fields && first_inline) ? 0 : indent, "", fd->key);
        int rc = PST_OK;
        if (fd == FIELD_LAYERS) {
            /* base is the cfg_model the model: section describes */
            print_layers(f, &((const cfg_model *)(const void *)base)->spec, indent);
        } else if (fd->value.type == CYAML_MAPPING) {
            fputc('\n', f);
            rc = print_fields(f, fd->value.mapping.fields, p, indent + 2, 0, err);
        } else if (fd->value.type == CYAML_SEQUENCE &&
                   fd->value.sequence.entry->type != CYAML_MAPPING) {
            print_scalar_list(f, fd, base);
        } else if (fd->value.type == CYAML_SEQUENCE) {
            const cyaml_schema_value_t *entry = fd->value.sequence.entry;
            uint64_t n = load_uint(base + fd->count_offset, fd->count_size);
            const char *arr;
            memcpy(&arr, p, sizeof arr);
            fputs(n ? "\n" : " []\n", f);
            for (uint64_t i = 0; i < n && !rc; i++) {
                fprintf(f, "%*s- ", indent + 2, "");
                rc = print_fields(f, entry->mapping.fields, arr + i * entry->data_size,
                                  indent + 4, 1, err);
            }
        } else {
            fputc(' ', f);
            rc = print_scalar(f, fd, p, err);
        }
        if (rc)
            return rc;
    }
    return PST_OK;
}

int cfg_job_print(const cfg_job *job, FILE *f, pst_err *err)
{
    assert(job && f);
    fputs("# pstrain job: effective values, defaults filled in\n", f);
    int rc = print_fields(f, job_fields, (const char *)job, 0, 0, err);
    if (rc)
        return rc;
    if (ferror(f))
        return pst_err_set(err, PST_ERR_IO, "writing the job: %s", strerror(errno));
    return PST_OK;
}
