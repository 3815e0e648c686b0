/* job/print.c -- cfg_job_print: the effective job as YAML that loads back the same. */
#include "job_internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

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

static int print_fields(FILE *f, const cyaml_schema_field_t *fields, const char *base,
                        const char *dflt, int indent, int first_inline, pst_err *err);

/* Whether field fd of the struct at base holds what it holds in the default job (the same
 * struct at dflt): scalars byte for byte, strings by content, lists when both are empty, a
 * mapping when every field of it does. */
static int is_default(const cyaml_schema_field_t *fd, const char *base, const char *dflt)
{
    const char *p = base + fd->data_offset, *d = dflt + fd->data_offset;
    switch (fd->value.type) {
    case CYAML_MAPPING:
        for (const cyaml_schema_field_t *c = fd->value.mapping.fields; c->key; c++)
            if (!is_default(c, p, d))
                return 0;
        return 1;
    case CYAML_SEQUENCE:
        return cfg_load_uint(base + fd->count_offset, fd->count_size) == 0 &&
               cfg_load_uint(dflt + fd->count_offset, fd->count_size) == 0;
    case CYAML_STRING: {
        const char *a, *b;
        memcpy(&a, p, sizeof a);
        memcpy(&b, d, sizeof b);
        return a == b || (a && b && strcmp(a, b) == 0);
    }
    case CYAML_IGNORE: return 1;
    default: return memcmp(p, d, fd->value.data_size) == 0;
    }
}

/* In the fingerprint (dflt: the default job's struct matching base), whether fd is left
 * out: cfg_field_fp_rule says so. */
static int skip_in_fingerprint(const cyaml_schema_field_t *fd, const char *base, const char *dflt)
{
    if (!dflt)
        return 0;
    cfg_fp_rule r = cfg_field_fp_rule(fd);
    return r == CFG_FP_NEVER || (r == CFG_FP_UNLESS_DEFAULT && is_default(fd, base, dflt));
}

static int print_scalar(FILE *f, const cyaml_schema_field_t *fd, const char *p, pst_err *err)
{
    const cyaml_schema_value_t *v = &fd->value;
    char num[40];
    switch (v->type) {
    case CYAML_INT: fprintf(f, "%" PRId64, cfg_load_int(p, v->data_size)); break;
    case CYAML_UINT: fprintf(f, "%" PRIu64, cfg_load_uint(p, v->data_size)); break;
    case CYAML_BOOL: fputs(cfg_load_int(p, v->data_size) ? "true" : "false", f); break;
    case CYAML_FLOAT:
        fmt_float(num, sizeof num, cfg_load_float(p, v->data_size), v->data_size);
        fputs(num, f);
        break;
    case CYAML_ENUM: {
        int64_t x = cfg_load_int(p, v->data_size);
        const char *name = cfg_enum_name(v->enumeration.strings, v->enumeration.count, x);
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

/* A list of numbers or strings in flow style: " [5, 6, 7]", " [\"a\", \"b\"]". */
static void print_scalar_list(FILE *f, const cyaml_schema_field_t *fd, const char *base)
{
    const cyaml_schema_value_t *entry = fd->value.sequence.entry;
    uint64_t n = cfg_load_uint(base + fd->count_offset, fd->count_size);
    const char *arr;
    memcpy(&arr, base + fd->data_offset, sizeof arr);
    fputs(" [", f);
    for (uint64_t i = 0; i < n; i++) {
        const char *q = arr + i * cfg_entry_stride(entry);
        fputs(i ? ", " : "", f);
        if (entry->type == CYAML_INT) {
            fprintf(f, "%" PRId64, cfg_load_int(q, entry->data_size));
        } else if (entry->type == CYAML_STRING) {
            const char *str;
            memcpy(&str, q, sizeof str);
            put_string(f, str ? str : "");
        } else {
            assert(entry->type == CYAML_UINT);
            fprintf(f, "%" PRIu64, cfg_load_uint(q, entry->data_size));
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
static int print_fields(FILE *f, const cyaml_schema_field_t *fields, const char *base,
                        const char *dflt, int indent, int first_inline, pst_err *err)
{
    for (const cyaml_schema_field_t *fd = fields; fd->key; fd++) {
        const char *p = base + fd->data_offset;
        if (skip_in_fingerprint(fd, base, dflt))
            continue;
        /* model.gpt2's layers are its expansion: printed, the job would name both */
        if (fd == FIELD_LAYERS && cfg_gpt2_is_set(&((const cfg_model *)(const void *)base)->gpt2))
            continue;
        fprintf(f, "%*s%s:", (fd == fields && first_inline) ? 0 : indent, "", fd->key);
        int rc = PST_OK;
        if (fd == FIELD_LAYERS) {
            /* base is the cfg_model the model: section describes */
            print_layers(f, &((const cfg_model *)(const void *)base)->spec, indent);
        } else if (fd->value.type == CYAML_MAPPING) {
            fputc('\n', f);
            rc = print_fields(f, fd->value.mapping.fields, p, dflt ? dflt + fd->data_offset : NULL,
                              indent + 2, 0, err);
        } else if (fd->value.type == CYAML_SEQUENCE &&
                   fd->value.sequence.entry->type != CYAML_MAPPING) {
            print_scalar_list(f, fd, base);
        } else if (fd->value.type == CYAML_SEQUENCE) {
            const cyaml_schema_value_t *entry = fd->value.sequence.entry;
            uint64_t n = cfg_load_uint(base + fd->count_offset, fd->count_size);
            const char *arr;
            memcpy(&arr, p, sizeof arr);
            fputs(n ? "\n" : " []\n", f);
            for (uint64_t i = 0; i < n && !rc; i++) {
                fprintf(f, "%*s- ", indent + 2, "");
                rc = print_fields(f, entry->mapping.fields, arr + i * entry->data_size, NULL,
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
    return cfg_job_print_fp(job, f, 0, err);
}

int cfg_job_print_fp(const cfg_job *job, FILE *f, int fingerprint, pst_err *err)
{
    assert(job && f);
    fputs("# pstrain job: effective values, defaults filled in\n", f);
    cfg_job tmpl;
    if (fingerprint)
        cfg_job_template(&tmpl, job->optimizer.kind, OPT_ADAGRAD);
    int rc = print_fields(f, cfg_job_fields, (const char *)job,
                          fingerprint ? (const char *)&tmpl : NULL, 0, 0, err);
    if (rc)
        return rc;
    if (ferror(f))
        return pst_err_set(err, PST_ERR_IO, "writing the job: %s", strerror(errno));
    return PST_OK;
}
