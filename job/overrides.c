/* job/overrides.c -- cfg_override: one key set from text as a dotted path. */
#include "job_internal.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    for (const cyaml_schema_field_t *f = cfg_opt_fields; f->key; f++) {
        if (f == FIELD_OPT_NAME)
            continue;
        char *p = (char *)c + f->data_offset;
        if (memcmp(p, (const char *)&was + f->data_offset, f->value.data_size) == 0)
            memcpy(p, (const char *)&now + f->data_offset, f->value.data_size);
    }
}

/* Frees a list of n scalars (and its strings). */
static void free_list(const cyaml_schema_value_t *entry, char *arr, uint64_t n)
{
    if (!arr)
        return;
    for (uint64_t i = 0; entry->type == CYAML_STRING && i < n; i++) {
        char *s;
        memcpy(&s, arr + i * cfg_entry_stride(entry), sizeof s);
        cfg_strfree(s);
    }
    cyaml_mem(NULL, arr, 0);
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
        return pst_err_set(err, PST_ERR_CONFIG, "%s: '%s' is not a list (e.g. 5,6,7)", path, value);
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
    if (count && !(arr = cyaml_mem(NULL, NULL, count * cfg_entry_stride(entry))))
        return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
    if (arr)
        memset(arr, 0,
               count * cfg_entry_stride(entry)); /* string entries: no old pointer to free */
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
        int bad = cfg_parse_scalar(entry, item, &val, why, sizeof why);
        if (!bad && entry->type == CYAML_STRING && !val.s) {
            snprintf(why, sizeof why, "an empty entry");
            bad = 1;
        }
        if (bad || cfg_store_scalar(entry, arr + i * cfg_entry_stride(entry), &val)) {
            free_list(entry, arr, i);
            return bad ? pst_err_set(err, PST_ERR_CONFIG, "%s: entry %zu: %s", path, i, why)
                       : pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        }
        item = comma ? comma + 1 : item + il;
    }
    char *old;
    memcpy(&old, base + f->data_offset, sizeof old);
    free_list(entry, old, cfg_load_uint(base + f->count_offset, f->count_size));
    memcpy(base + f->data_offset, &arr, sizeof arr);
    cfg_store_uint(base + f->count_offset, f->count_size, count);
    return PST_OK;
}

/* model.layers.<i>.<key>: rest is "<i>.<key>" (or less, an error). */
static int override_layer(cfg_job *job, const char *path, char *rest, const char *value,
                          pst_err *err)
{
    const ml_registry *reg = job->model.reg ? job->model.reg : ml_registry_builtin();
    char *idx = next_comp(&rest);
    if (!idx || !rest)
        return pst_err_set(err, PST_ERR_CONFIG,
                           "%s: name an entry and its key, e.g. "
                           "layers.0.type",
                           path);
    char *end;
    errno = 0;
    unsigned long long i = strtoull(idx, &end, 10);
    if (idx[0] < '0' || idx[0] > '9' || *end || errno == ERANGE)
        return pst_err_set(err, PST_ERR_CONFIG, "%s: '%s' is not an entry index", path, idx);
    ml_model_spec *m = &job->model.spec;
    if (i >= m->nlayers)
        return pst_err_set(err, PST_ERR_CONFIG, "%s: index %llu is past the end (%u entries)", path,
                           i, m->nlayers);
    ml_layer_spec *L = &m->layers[i];
    char *key = next_comp(&rest);
    char why[sizeof err->msg];
    int rc = rest ? 1 : cfg_layer_set_key(reg, L, key, value, why, sizeof why);
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

    const cyaml_schema_field_t *fields = cfg_job_fields;
    const cyaml_schema_field_t *f = NULL;
    char *base = (char *)job;
    char *rest = buf;
    for (;;) {
        char *comp = next_comp(&rest);
        if (!comp || !(f = cfg_field_find(fields, comp)))
            return pst_err_set(err, PST_ERR_CONFIG, "unknown key '%s'", path);
        if (f->value.type == CYAML_MAPPING) {
            if (!rest) {
                char known[320];
                cfg_field_list(f->value.mapping.fields, known, sizeof known);
                return pst_err_set(err, PST_ERR_CONFIG,
                                   "%s: is a section; set one of its keys (%s)", path, known);
            }
            base += f->data_offset;
            fields = f->value.mapping.fields;
            continue;
        }
        if (f->value.type == CYAML_SEQUENCE && f->value.sequence.entry->type != CYAML_MAPPING) {
            if (rest)
                return pst_err_set(err, PST_ERR_CONFIG,
                                   "unknown key '%s' (%s is set whole, "
                                   "e.g. %s 5,6,7)",
                                   path, f->key, f->key);
            return set_scalar_list(f, base, path, value, err);
        }
        if (f == FIELD_LAYERS && cfg_gpt2_is_set(&job->model.gpt2))
            return pst_err_set(err, PST_ERR_CONFIG,
                               "%s: the layers of this job are model.gpt2's; set its keys", path);
        if (f == FIELD_LAYERS)
            return override_layer(job, path, rest, value, err);
        if (rest)
            return pst_err_set(err, PST_ERR_CONFIG, "unknown key '%s'", path);
        break;
    }

    cfg_scalar val;
    char why[sizeof err->msg];
    if (cfg_parse_scalar(&f->value, value, &val, why, sizeof why))
        return pst_err_set(err, PST_ERR_CONFIG, "%s: %s", path, why);

    opt_kind old_kind = job->optimizer.kind;
    char *old_dir = NULL; /* "runs/<old name>" when output.dir is still that default */
    if (f == FIELD_JOB_NAME && job->name && job->output.dir) {
        if (!(old_dir = cfg_default_dir(job->name)))
            return pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        if (strcmp(old_dir, job->output.dir) != 0) {
            cfg_strfree(old_dir);
            old_dir = NULL;
        }
    }
    int rc = cfg_store_scalar(&f->value, base + f->data_offset, &val);
    if (rc == PST_OK && f == FIELD_OPT_NAME)
        follow_opt_kind(&job->optimizer, old_kind);
    if (rc == PST_OK && old_dir && job->name) {
        char *dir = cfg_default_dir(job->name);
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
    /* The layers follow their configuration and the window they read. */
    if (strncmp(path, "model.gpt2.", 11) == 0 || strcmp(path, "data.context") == 0)
        return cfg_gpt2_expand(job, err);
    return PST_OK;
}
