/* job/job_internal.h -- what the files of job/ share; for job/ alone.
 *
 *   schema.c       the libcyaml tables, enum names, typed field access, the scalar parser
 *   parse.c        loading: the schema-guided scan (pass 1), libcyaml (2), defaults (3)
 *   layers.c       model.layers entries, read by the layer registry's keys
 *   overrides.c    cfg_override
 *   checks.c       cfg_job_check
 *   print.c        cfg_job_print
 *   fingerprint.c  cfg_job_hash
 *
 * Every string and the layer array are allocated with cyaml_mem, libcyaml's allocator, also
 * when job/ makes them (defaults, overrides), so cyaml_free frees any job. */
#ifndef PSTRAIN_JOB_JOB_INTERNAL_H
#define PSTRAIN_JOB_JOB_INTERNAL_H

#include "job.h"

#include <cyaml/cyaml.h>
#include <yaml.h>

#define CFG_PATH_MAX 256

/* ---- schema.c ---------------------------------------------------------------------- */

extern const cyaml_schema_field_t cfg_job_fields[];
extern const cyaml_schema_field_t cfg_data_fields[];
extern const cyaml_schema_field_t cfg_model_fields[];
extern const cyaml_schema_field_t cfg_opt_fields[];
extern const cyaml_schema_field_t cfg_sparse_fields[];
extern const cyaml_schema_field_t cfg_output_fields[];
extern const cyaml_schema_field_t cfg_image_fields[];
extern const cyaml_schema_value_t cfg_job_value;

/* The fields cfg_override, fill_defaults and the printer treat specially. */
#define FIELD_JOB_NAME (&cfg_job_fields[0])
#define FIELD_OPT_NAME (&cfg_opt_fields[0])
#define FIELD_SPARSE_OPT (&cfg_sparse_fields[0])
#define FIELD_OUTPUT_DIR (&cfg_output_fields[0])
#define FIELD_LAYERS (&cfg_model_fields[0])

/* model.gpt2 (layers.c): whether it is set, and its expansion into job->model.spec (the
 * layers replaced; loss sequence_crossentropy; init kept). Refuses, one line, a loss other
 * than sequence_crossentropy set beside it and what ml_gpt2_spec refuses. */
int cfg_gpt2_is_set(const cfg_gpt2 *g);
int cfg_gpt2_expand(cfg_job *job, pst_err *err);

/* How a field counts in the job's fingerprint (schema.c: the keys added after fingerprints
 * were fixed). */
typedef enum {
    CFG_FP_COUNTED = 0,    /* always */
    CFG_FP_UNLESS_DEFAULT, /* only away from its default */
    CFG_FP_NEVER           /* never: it changes nothing computed */
} cfg_fp_rule;
cfg_fp_rule cfg_field_fp_rule(const cyaml_schema_field_t *f);

/* The job every absent key takes its value from (parse.c's pass 3), for the optimizer
 * rules `opt` and `sparse_opt` (the embedding tables': adagrad unless the file names one),
 * whose defaults depend on them. Strings point at literals: read only. */
void cfg_job_template(cfg_job *tmpl, opt_kind opt, opt_kind sparse_opt);

/* cfg_job_print, or with fingerprint 1 the text cfg_job_hash hashes: the fields
 * cfg_field_fp_rule leaves out are left out. */
int cfg_job_print_fp(const cfg_job *job, FILE *f, int fingerprint, pst_err *err);

/* The name of value v in table t[0..n), NULL if none. */
const char *cfg_enum_name(const cyaml_strval_t *t, size_t n, int64_t v);
const cyaml_schema_field_t *cfg_field_find(const cyaml_schema_field_t *fields, const char *key);
/* "format, train, train_labels, ..." for "unknown key" messages. */
void cfg_field_list(const cyaml_schema_field_t *fields, char *buf, size_t n);

/* Bytes per entry of a list: a pointer for string entries (whose data_size is a char's). */
static inline size_t cfg_entry_stride(const cyaml_schema_value_t *e)
{
    return (e->flags & CYAML_FLAG_POINTER) ? sizeof(void *) : e->data_size;
}

/* Strings through libcyaml's allocator (cyaml_mem). */
char *cfg_strdup(const char *s);
void cfg_strfree(char *s);

/* Raw field access by size (the schema records data_size). */
int64_t cfg_load_int(const void *p, uint32_t size);
uint64_t cfg_load_uint(const void *p, uint32_t size);
void cfg_store_uint(void *p, uint32_t size, uint64_t v);
double cfg_load_float(const void *p, uint32_t size);

typedef struct {
    int64_t i;     /* CYAML_INT, CYAML_ENUM, CYAML_BOOL */
    uint64_t u;    /* CYAML_UINT */
    double d;      /* CYAML_FLOAT (already rounded to float for 4-byte fields) */
    const char *s; /* CYAML_STRING: borrowed text; NULL for the null words */
} cfg_scalar;

int cfg_is_null_word(const char *s);
int cfg_parse_scalar(const cyaml_schema_value_t *v, const char *text, cfg_scalar *out, char *why,
                     size_t whylen);
int cfg_store_scalar(const cyaml_schema_value_t *v, void *p, const cfg_scalar *val);

/* ---- parse.c: pass 1's scanner state, also used by layers.c ------------------------ */

#define CFG_MAX_SET 128 /* > the number of fields outside the layer list (45) */

typedef struct {
    yaml_parser_t parser;
    const char *source;
    pst_err *err;
    char path[CFG_PATH_MAX];                      /* dotted path of the node being scanned */
    const cyaml_schema_field_t *set[CFG_MAX_SET]; /* fields the file sets (outside lists) */
    size_t nset;
    const char *find;       /* a dotted path whose line to report, or NULL */
    size_t found_line;      /* its key's line, 0 until seen */
    const ml_registry *reg; /* layer types */
    ml_layer_spec *layers;  /* model.layers as read (moved into the job when it loads) */
    unsigned nlayers, layers_cap;
} cfg_scan;

/* "<source>:<line>: <path>: <msg>", the path left out at the top level. */
int cfg_scan_fail(cfg_scan *sc, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int cfg_scan_next(cfg_scan *sc, yaml_event_t *ev);
/* Appends ".comp" (or "comp" at the top) to sc->path; returns the old length to restore. */
size_t cfg_path_push(cfg_scan *sc, const char *comp);
/* cfg_path_push for a mapping key met on `line`, noting the line when the path is sc->find. */
size_t cfg_path_push_key(cfg_scan *sc, const char *key, size_t line);
/* Reads the next key of a mapping (the job's sections and a layer entry alike): *end = 1
 * at the mapping's end (nothing to delete), else *kev is the key's scalar event (the
 * caller deletes it) and *line its line. A key that is a list or a mapping is an error. */
int cfg_scan_key(cfg_scan *sc, yaml_event_t *kev, size_t *line, int *end);
/* "runs/<name>" (cyaml_mem), NULL without memory. */
char *cfg_default_dir(const char *name);

/* ---- layers.c ---------------------------------------------------------------------- */

/* model.layers: a list of mappings whose keys depend on each entry's type. */
int cfg_scan_layers(cfg_scan *sc, yaml_event_t *ev);
/* Sets key `key` of layer L from text (a scalar). Returns 0, 1 for a key the layer does
 * not have, -1 for a bad value (why says what), PST_ERR_NOMEM-like -2 for memory. */
int cfg_layer_set_key(const ml_registry *reg, ml_layer_spec *L, const char *key, const char *text,
                      char *why, size_t whylen);

#endif
