/* ckpt/init_from.c -- fine-tuning: a model's initial weights, by parameter name, from another
 * model's checkpoint or a Hugging Face GPT-2 folder (job key model.init_from). */
#include "ckpt_internal.h"
#include "hf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Fine-tuning: initial weights by name from another model's checkpoint ---------------- */

/* Appends ", name" to a list of names, or " ..." once when it no longer fits. */
static void names_append(char *buf, size_t cap, const char *name)
{
    size_t n = strlen(buf);
    if (n >= 4 && strcmp(buf + n - 4, " ...") == 0)
        return;
    size_t need = (n ? 2 : 0) + strlen(name);
    if (n + need + 5 <= cap)
        snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", name);
    else if (n + 5 <= cap)
        snprintf(buf + n, cap - n, " ...");
}

/* A Hugging Face GPT-2 folder (hf.h) is read by HF names and dtypes, its buffers and tied
 * head left out of the skipped list; a file by the model's own names, F32. */
int ckpt_init_from(const char *path, ml_model *m, unsigned char *loaded, ckpt_init_report *rep,
                   pst_err *err)
{
    memset(rep, 0, sizeof *rep);
    st_file f;
    char weights[4096];
    int hf = ckpt_hf_is_folder(path);
    int rc = hf ? ckpt_hf_open_for(&f, weights, sizeof weights, path, m, err)
                : ckpt_st_open(&f, path, err);
    if (rc)
        return ckpt_one_line(err, rc);
    /* wte, wpe and ln_f are named alike in both layouts: without this, a Hugging Face file
     * given as a file would load those four and leave every block fresh. */
    if (!hf && ckpt_hf_weights_file(&f)) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: the weights of a Hugging Face GPT-2: give the folder that holds "
                         "them and its config.json",
                         path);
        ckpt_st_fini(&f);
        return ckpt_one_line(err, rc);
    }
    int nseg = ml_model_nsegments(m);
    st_tensor **src = calloc((size_t)(nseg ? nseg : 1), sizeof *src);
    if (!src) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    for (int i = 0; i < nseg; i++) {
        const ml_segment *sg = ml_model_segment(m, i);
        for (int j = 0; j < i; j++)
            if (strcmp(ml_model_segment(m, j)->name, sg->name) == 0) {
                rc = pst_err_set(err, PST_ERR_CONFIG,
                                 "two parameters of the model are named "
                                 "'%s'",
                                 sg->name);
                goto cleanup;
            }
        st_tensor *t = hf ? ckpt_hf_find(&f, sg->name) : ckpt_st_find_tensor(&f, sg->name);
        if (!t) {
            rep->fresh++;
            names_append(rep->fresh_names, sizeof rep->fresh_names, sg->name);
            continue;
        }
        /* Same name, other shape: a layer resized without being renamed. An error, not a
         * fresh start, so a typo in units never silently discards pretrained weights. */
        int64_t shape[2] = {sg->rows, sg->cols};
        if (hf)
            rc = ckpt_hf_claim(&f, t, sg, "the model", err);
        else
            rc = ckpt_st_claim(&f, sg->name, shape, sg->cols == 1 ? 1 : 2, &t, err);
        if (rc)
            goto cleanup;
        src[i] = t;
        rep->loaded++;
    }
    if (rep->loaded == 0) {
        rc = pst_err_set(err, PST_ERR_DATA,
                         "%s: holds none of the model's parameters (%s): "
                         "layer names must match the pretrained model's",
                         path, rep->fresh_names);
        goto cleanup;
    }
    for (int i = 0; i < f.nt; i++)
        if (!f.t[i].used && strcmp(f.t[i].name, PREP_SHIFT) != 0 &&
            strcmp(f.t[i].name, PREP_MUL) != 0 && !(hf && ckpt_hf_ignorable(f.t[i].name))) {
            rep->skipped++;
            names_append(rep->skipped_names, sizeof rep->skipped_names, f.t[i].name);
        }
    /* Everything checked: from here on nothing fails. */
    float *params = ml_model_params(m);
    for (int i = 0; i < nseg; i++)
        if (src[i]) {
            const ml_segment *sg = ml_model_segment(m, i);
            ckpt_st_read_floats(&f, src[i], params + sg->offset, sg->len);
        }
    for (int i = 0; loaded && i < nseg; i++)
        loaded[i] = src[i] != NULL;
cleanup:
    free(src);
    ckpt_st_fini(&f);
    if (rc)
        memset(rep, 0, sizeof *rep);
    return ckpt_one_line(err, rc);
}
