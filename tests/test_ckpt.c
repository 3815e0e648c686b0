/* tests/test_ckpt.c -- checkpoints: a save/load round trip keeps weights, architecture,
 * classes and scaler; every damaged or wrong file is refused with one line naming the
 * problem and loads nothing.
 *
 * Damaged files come two ways: pstrain's own file cut short or with flipped bytes (every
 * header byte, many data bytes), and files built here by an independent writer of the
 * layout (write_st) with one thing wrong each: overlapping offsets, a wrong dtype, a
 * missing, unknown or misshapen tensor, a NaN, a bad checksum, bad metadata. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/fs.h"
#include "ckpt/ckpt.h"
#include "spec_helpers.h"
#include "base/rng.h"

/* ---- Fixture: a temp dir, a model, its training data, a saved checkpoint ---------------- */

typedef struct {
    char dir[64];
    char path[1024]; /* scratch file names */
    char good[600];  /* pstrain's checkpoint of the model below */
    ml_layer_spec layers[3];
    ml_model_spec spec;
    ml_model *m;
    ds_dataset *train;
    ds_scaler scaler;
    unsigned char *bytes; /* the good file */
    size_t size;
} fixture;

static const char *tmp_path(fixture *fx, const char *name)
{
    snprintf(fx->path, sizeof fx->path, "%s/%s", fx->dir, name);
    return fx->path;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)len + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    strcpy(fx->dir, "/tmp/pst_test_ckpt_XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    /* 3 inputs -> dense 5 relu ("hidden") -> tanh -> dense 4 softmax, cross-entropy. */
    fx->layers[0] = DENSE_N(5, ACT_RELU, "hidden");
    fx->layers[1] = LAYER_OF(&ml_layer_activation, 0, ACT_TANH, NULL);
    fx->layers[2] = DENSE_N(4, ACT_SOFTMAX, NULL);
    fx->spec = (ml_model_spec){fx->layers, 3, ML_LOSS_CCE, ML_INIT_AUTO};
    pst_err err = {0};
    fx->m = ml_model_create(&fx->spec, 3, 8, &err);
    if (!fx->m)
        return -1;
    ml_model_init(fx->m, 11);
    /* String labels give class names; "eel" first so names are not in sorted order. */
    const char *csv = "a,b,c,label\n"
                      "1,2,3,eel\n4,5,6,cat\n7,8,10,dog\n0,1,0,fox\n"
                      "2,2,2,cat\n3,1,4,eel\n5,9,2,dog\n6,5,3,fox\n";
    char p[600];
    snprintf(p, sizeof p, "%s/train.csv", fx->dir);
    write_bytes(p, csv, strlen(csv));
    ds_csv_options o = {
        .delimiter = ',', .header = 1, .label_name = "label", .task = DS_TASK_CLASSIFY};
    fx->train = ds_load_csv(p, &o, &err);
    if (!fx->train || ds_scaler_fit(&fx->scaler, DS_SCALE_STANDARDIZE, fx->train, &err))
        return -1;
    snprintf(fx->good, sizeof fx->good, "%s/model.safetensors", fx->dir);
    if (ckpt_save_model(fx->good, fx->m, &fx->spec, fx->train, &fx->scaler, &err))
        return -1;
    fx->bytes = read_bytes(fx->good, &fx->size);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    DIR *d = opendir(fx->dir);
    if (d) {
        struct dirent *e;
        char p[600];
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                unlink((snprintf(p, sizeof p, "%s/%s", fx->dir, e->d_name), p));
        }
        closedir(d);
    }
    rmdir(fx->dir);
    ml_model_destroy(fx->m);
    ds_destroy(fx->train);
    ds_scaler_fini(&fx->scaler);
    free(fx->bytes);
    free(fx);
    return 0;
}

/* The load fails with PST_ERR_DATA, one line that starts with the path and contains
 * every word given, and nothing loaded. */
static void expect_refused(const char *path, const char *w1, const char *w2)
{
    ckpt_model *c = (ckpt_model *)1;
    pst_err err = {0};
    int rc = ckpt_load(path, 8, &c, &err);
    if (rc != PST_ERR_DATA || c != NULL || (w1 && !strstr(err.msg, w1)) ||
        (w2 && !strstr(err.msg, w2)))
        fail_msg("load of %s: rc %d, message '%s', expected '%s' '%s'", path, rc, err.msg,
                 w1 ? w1 : "", w2 ? w2 : "");
    if (strchr(err.msg, '\n'))
        fail_msg("multi-line: %s", err.msg);
    assert_int_equal(strncmp(err.msg, path, strlen(path)), 0);
}

/* ---- Round trips -------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    fixture *fx = *state;
    ckpt_model *c = NULL;
    pst_err err = {0};
    assert_int_equal(ckpt_load(fx->good, 8, &c, &err), PST_OK);
    ml_model *n = ckpt_model_net(c);
    size_t P = ml_model_nparams(fx->m);
    assert_int_equal(ml_model_nparams(n), P);
    assert_memory_equal(ml_model_params(n), ml_model_params(fx->m), P * sizeof(float));
    assert_int_equal(ml_model_in_dim(n), 3);
    assert_int_equal(ml_model_out_dim(n), 4);
    assert_string_equal(ml_model_segment(n, 0)->name, "hidden.weight");
    assert_string_equal(ml_model_segment(n, 2)->name, "dense_1.weight");

    const ml_model_spec *s = ckpt_model_spec(c);
    assert_int_equal(s->nlayers, 3);
    assert_int_equal(s->loss, ML_LOSS_CCE);
    for (unsigned l = 0; l < 3; l++) {
        assert_ptr_equal(s->layers[l].ops, fx->layers[l].ops);
        assert_int_equal(s->layers[l].val[0].i, fx->layers[l].val[0].i); /* units */
        assert_int_equal(s->layers[l].val[1].i, fx->layers[l].val[1].i); /* activation */
    }
    assert_string_equal(s->layers[0].name, "hidden");
    assert_null(s->layers[2].name);

    assert_int_equal(ckpt_model_task(c), DS_TASK_CLASSIFY);
    assert_int_equal(ckpt_model_nclasses(c), 4);
    const char *want[] = {"eel", "cat", "dog", "fox"};
    for (int k = 0; k < 4; k++)
        assert_string_equal(ckpt_model_class_name(c, k), want[k]);
    assert_null(ckpt_model_class_name(c, 4));

    const ds_scaler *sc = ckpt_model_scaler(c);
    assert_int_equal(sc->kind, DS_SCALE_STANDARDIZE);
    assert_int_equal(sc->d, 3);
    assert_memory_equal(sc->shift, fx->scaler.shift, 3 * sizeof(float));
    assert_memory_equal(sc->mul, fx->scaler.mul, 3 * sizeof(float));

    /* Same weights, same outputs. */
    float x[6] = {0.5f, -1.0f, 2.0f, 1.5f, 0.0f, -0.25f};
    float a[8];
    memcpy(a, ml_model_forward(fx->m, x, 2), sizeof a);
    assert_memory_equal(ml_model_forward(n, x, 2), a, sizeof a);
    ckpt_model_destroy(c);

    /* Nothing but the checkpoint is left in the folder (the temporary file was renamed). */
    DIR *d = opendir(fx->dir);
    struct dirent *e;
    while ((e = readdir(d)))
        assert_null(strstr(e->d_name, ".tmp."));
    closedir(d);
}

/* A loaded model rebuilt for another batch keeps its weights and computes the same. */
static void test_set_max_batch(void **state)
{
    fixture *fx = *state;
    ckpt_model *c = NULL;
    pst_err err = {0};
    assert_int_equal(ckpt_load(fx->good, 1, &c, &err), PST_OK);
    const float *x = ds_x_const(fx->train); /* (8, 3) */
    float y1[4];
    memcpy(y1, ml_model_forward(ckpt_model_net(c), x, 1), sizeof y1);
    assert_int_equal(ckpt_model_set_max_batch(c, 8, &err), PST_OK);
    ml_model *n = ckpt_model_net(c);
    assert_int_equal(ml_model_max_batch(n), 8);
    size_t P = ml_model_nparams(fx->m);
    assert_memory_equal(ml_model_params(n), ml_model_params(fx->m), P * sizeof(float));
    assert_memory_equal(ml_model_forward(n, x, 8), y1, sizeof y1);
    assert_int_equal(ckpt_model_set_max_batch(c, 8, &err), PST_OK); /* already: kept */
    assert_ptr_equal(ckpt_model_net(c), n);
    ckpt_model_destroy(c);
}

static void test_regression_round_trip(void **state)
{
    fixture *fx = *state;
    /* A name longer than the model keeps (39 bytes) must still load back. */
    char longname[] = "a_rather_long_layer_name_that_goes_on_and_on_1";
    ml_layer_spec L[2] = {DENSE_N(6, ACT_TANH, longname), DENSE_N(1, ACT_LINEAR, "out")};
    ml_model_spec spec = {L, 2, ML_LOSS_MSE, ML_INIT_AUTO};
    pst_err err = {0};
    ml_model *m = ml_model_create(&spec, 2, 4, &err);
    assert_non_null(m);
    ml_model_init(m, 5);
    ds_dataset *like = ds_create(3, 2, DS_TASK_REGRESS, 0, 1, &err);
    assert_non_null(like);
    const char *p = tmp_path(fx, "reg.safetensors");
    assert_int_equal(ckpt_save_model(p, m, &spec, like, NULL, &err), PST_OK);
    ckpt_model *c = NULL;
    assert_int_equal(ckpt_load(p, 4, &c, &err), PST_OK);
    assert_int_equal(ckpt_model_task(c), DS_TASK_REGRESS);
    assert_int_equal(ckpt_model_nclasses(c), 0);
    assert_null(ckpt_model_class_name(c, 0));
    assert_int_equal(ckpt_model_scaler(c)->kind, DS_SCALE_NONE);
    assert_float_equal(ckpt_model_scaler(c)->mul[1], 1.0, 0.0);
    assert_float_equal(ckpt_model_scaler(c)->shift[0], 0.0, 0.0);
    assert_string_equal(ml_model_segment(ckpt_model_net(c), 2)->name, "out.weight");
    assert_string_equal(ml_model_segment(ckpt_model_net(c), 0)->name, ml_model_segment(m, 0)->name);
    assert_memory_equal(ml_model_params(ckpt_model_net(c)), ml_model_params(m),
                        ml_model_nparams(m) * sizeof(float));
    ckpt_model_destroy(c);
    ds_destroy(like);
    ml_model_destroy(m);
}

static void test_load_into(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    ml_model *m = ml_model_create(&fx->spec, 3, 2, &err);
    assert_non_null(m);
    ds_scaler sc;
    assert_int_equal(ckpt_load_into(fx->good, m, &sc, &err), PST_OK);
    assert_memory_equal(ml_model_params(m), ml_model_params(fx->m),
                        ml_model_nparams(m) * sizeof(float));
    assert_int_equal(sc.kind, DS_SCALE_STANDARDIZE);
    assert_memory_equal(sc.mul, fx->scaler.mul, 3 * sizeof(float));
    ds_scaler_fini(&sc);

    /* Another architecture: refused, naming the tensor and both shapes; m unchanged. */
    ml_layer_spec L[1] = {DENSE_N(4, ACT_SOFTMAX, "hidden")};
    ml_model_spec other = {L, 1, ML_LOSS_CCE, ML_INIT_AUTO};
    ml_model *o = ml_model_create(&other, 3, 2, &err);
    assert_non_null(o);
    ml_model_init(o, 3);
    float before[16];
    memcpy(before, ml_model_params(o), sizeof before);
    assert_int_equal(ckpt_load_into(fx->good, o, NULL, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "tensor 'hidden.weight': shape [5, 3] but the model needs "
                                    "[4, 3]"));
    assert_memory_equal(ml_model_params(o), before, sizeof before);
    ml_model_destroy(o);
    ml_model_destroy(m);
}

/* Saving over an existing checkpoint replaces it whole; weights that are not finite are
 * refused and leave the old file as it was. */
static void test_save_replaces_or_keeps(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    const char *p = tmp_path(fx, "over.safetensors");
    char path[1024];
    snprintf(path, sizeof path, "%s", p);
    write_bytes(path, "old contents", 12);
    assert_int_equal(ckpt_save_model(path, fx->m, &fx->spec, fx->train, &fx->scaler, &err), PST_OK);
    size_t n;
    unsigned char *b = read_bytes(path, &n);
    assert_int_equal(n, fx->size);
    assert_memory_equal(b, fx->bytes, n);
    free(b);

    float *w = ml_model_params(fx->m);
    float keep = w[7];
    w[7] = NAN;
    int rc = ckpt_save_model(path, fx->m, &fx->spec, fx->train, &fx->scaler, &err);
    w[7] = keep;
    assert_int_equal(rc, PST_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "hidden.weight"));
    b = read_bytes(path, &n);
    assert_int_equal(n, fx->size);
    assert_memory_equal(b, fx->bytes, n);
    free(b);

    /* A layer list that is not the model's. */
    ml_layer_spec L[1] = {DENSE_N(4, ACT_SOFTMAX, NULL)};
    ml_model_spec other = {L, 1, ML_LOSS_CCE, ML_INIT_AUTO};
    assert_int_equal(ckpt_save_model(path, fx->m, &other, NULL, NULL, &err), PST_ERR_ARG);

    snprintf(path, sizeof path, "%s/no/such/dir/m.safetensors", fx->dir);
    assert_int_equal(ckpt_save_model(path, fx->m, &fx->spec, NULL, NULL, &err), PST_ERR_IO);
}

/* cJSON's fail_at-th allocation fails, the others do not: a silently dropped key would
 * go unnoticed were every later one to fail too (test_save_out_of_memory). */
static long oom_calls, oom_fail_at;
static void *oom_malloc(size_t n) { return oom_calls++ == oom_fail_at ? NULL : malloc(n); }

/* Out of memory at any one of the header's JSON allocations: the save fails with
 * PST_ERR_NOMEM and writes nothing, never a header with a key missing; past the last
 * one it writes the very file of an unhindered save (want, n bytes). */
static void save_out_of_memory(const char *path, ml_model *m, const ml_model_spec *spec,
                               const ds_dataset *like, const ds_scaler *scaler,
                               const unsigned char *want, size_t n)
{
    for (oom_fail_at = 0;; oom_fail_at++) {
        pst_err err = {0};
        oom_calls = 0;
        cJSON_InitHooks(&(cJSON_Hooks){.malloc_fn = oom_malloc, .free_fn = free});
        int rc = ckpt_save_model(path, m, spec, like, scaler, &err);
        cJSON_InitHooks(NULL);
        if (oom_calls <= oom_fail_at) { /* past the last allocation */
            assert_int_equal(rc, PST_OK);
            break;
        }
        assert_int_equal(rc, PST_ERR_NOMEM);
        assert_int_equal(access(path, F_OK), -1);
    }
    assert_true(oom_fail_at > 10); /* the failures were met */
    size_t got;
    unsigned char *b = read_bytes(path, &got);
    assert_int_equal(got, n);
    assert_memory_equal(b, want, n);
    free(b);
    unlink(path);
}

static void test_save_out_of_memory(void **state)
{
    fixture *fx = *state;
    char path[1024], ref[1024];
    snprintf(path, sizeof path, "%s", tmp_path(fx, "oom.safetensors"));
    save_out_of_memory(path, fx->m, &fx->spec, fx->train, &fx->scaler, fx->bytes, fx->size);
    /* An image input (input_shape) and layers with inputs. */
    ml_layer_spec flat, d1 = DENSE_N(4, ACT_TANH, "d1"), d2 = DENSE_N(4, ACT_TANH, "d2"), sum;
    ml_layer_spec_init(&flat, &ml_layer_flatten);
    ml_layer_spec_init(&sum, &ml_layer_add);
    char *fin[] = {"flat"}, *both[] = {"d1", "d2"};
    flat.name = "flat";
    d1.inputs = d2.inputs = fin;
    d1.ninputs = d2.ninputs = 1;
    sum.inputs = both;
    sum.ninputs = 2;
    ml_layer_spec L[] = {flat, d1, d2, sum, DENSE(3, ACT_SOFTMAX)};
    ml_model_spec spec = {L, 5, ML_LOSS_CCE, ML_INIT_AUTO};
    ml_shape in = ml_shape_image(1, 2, 3);
    pst_err err = {0};
    ml_model *m = ml_model_create_shaped(&spec, &in, 2, &err);
    assert_non_null(m);
    ml_model_init(m, 3);
    snprintf(ref, sizeof ref, "%s", tmp_path(fx, "image.safetensors"));
    assert_int_equal(ckpt_save_model(ref, m, &spec, NULL, NULL, &err), PST_OK);
    size_t n;
    unsigned char *want = read_bytes(ref, &n);
    /* the header (after its 8-byte length) holds pstrain.model as a string, quotes
     * escaped */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | want[i];
    assert_true(hlen <= n - 8);
    char *h = strndup((const char *)want + 8, (size_t)hlen);
    assert_non_null(h);
    assert_non_null(strstr(h, "\\\"input_shape\\\":[1,2,3]"));
    assert_non_null(strstr(h, "\\\"inputs\\\":[\\\"d1\\\",\\\"d2\\\"]"));
    free(h);
    save_out_of_memory(path, m, &spec, NULL, NULL, want, n);
    free(want);
    unlink(ref);
    ml_model_destroy(m);
}

/* ---- pstrain's file, damaged --------------------------------------------------------- */

static void test_missing_file(void **state)
{
    fixture *fx = *state;
    ckpt_model *c = (ckpt_model *)1;
    pst_err err = {0};
    const char *p = tmp_path(fx, "absent.safetensors");
    assert_int_equal(ckpt_load(p, 8, &c, &err), PST_ERR_IO);
    assert_null(c);
    assert_non_null(strstr(err.msg, "No such file"));
}

static void test_truncated_everywhere(void **state)
{
    fixture *fx = *state;
    char p[1024];
    snprintf(p, sizeof p, "%s", tmp_path(fx, "cut.safetensors"));
    for (size_t cut = 0; cut < fx->size; cut++) {
        write_bytes(p, fx->bytes, cut);
        expect_refused(p, cut == 0 ? "empty" : "truncated", NULL);
    }
}

static void test_header_flips(void **state)
{
    fixture *fx = *state;
    char p[1024];
    snprintf(p, sizeof p, "%s", tmp_path(fx, "flip.safetensors"));
    uint64_t hlen;
    memcpy(&hlen, fx->bytes, 8);
    unsigned char *b = malloc(fx->size);
    assert_non_null(b);
    rng_state r;
    rng_seed(&r, 99);
    /* Every byte of the length and the header, once with its lowest bit flipped and once
     * with a random non-zero mask. */
    for (size_t i = 0; i < 8 + hlen; i++) {
        for (int t = 0; t < 2; t++) {
            memcpy(b, fx->bytes, fx->size);
            b[i] ^= t == 0 ? 1 : (unsigned char)(1 + rng_below(&r, 255));
            write_bytes(p, b, fx->size);
            expect_refused(p, NULL, NULL);
        }
    }
    free(b);
}

/* Which tensor of the good file holds data byte `at`. */
static const char *tensor_at(const fixture *fx, size_t at, char *name, size_t n)
{
    uint64_t hlen;
    memcpy(&hlen, fx->bytes, 8);
    cJSON *h = cJSON_ParseWithLength((const char *)fx->bytes + 8, hlen);
    assert_non_null(h);
    name[0] = '\0';
    for (cJSON *e = h->child; e; e = e->next) {
        cJSON *of = cJSON_GetObjectItem(e, "data_offsets");
        if (of && at >= (size_t)cJSON_GetArrayItem(of, 0)->valuedouble &&
            at < (size_t)cJSON_GetArrayItem(of, 1)->valuedouble)
            snprintf(name, n, "'%s'", e->string);
    }
    cJSON_Delete(h);
    return name;
}

static void test_data_flips(void **state)
{
    fixture *fx = *state;
    char p[1024], name[128];
    snprintf(p, sizeof p, "%s", tmp_path(fx, "dflip.safetensors"));
    uint64_t hlen;
    memcpy(&hlen, fx->bytes, 8);
    size_t d0 = 8 + hlen;
    unsigned char *b = malloc(fx->size);
    assert_non_null(b);
    rng_state r;
    rng_seed(&r, 7);
    for (size_t i = d0; i < fx->size; i++) {
        memcpy(b, fx->bytes, fx->size);
        b[i] ^= (unsigned char)(1 + rng_below(&r, 255));
        write_bytes(p, b, fx->size);
        /* The checksum catches it, and names the tensor the byte belongs to. */
        expect_refused(p, "checksum", tensor_at(fx, i - d0, name, sizeof name));
    }
    free(b);
}

/* ---- Files built here, one thing wrong in each ------------------------------------- */

typedef struct {
    const char *name;
    const char *dtype; /* NULL: "F32" */
    int ndim;
    int64_t shape[2];
    const float *p;
    size_t n;             /* floats of data */
    int64_t offset_shift; /* added to both data offsets (to make overlaps) */
} wt;

/* The safetensors layout written independently of ckpt/safetensors.c: meta (key, value) pairs,
 * then the tensors in order; with_crc adds crc32.<name> and the header checksum. */
static void write_st(const char *path, const char *const (*meta)[2], int nmeta, const wt *ts,
                     int nt, int with_crc)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(root, "__metadata__");
    for (int i = 0; i < nmeta; i++)
        cJSON_AddStringToObject(md, meta[i][0], meta[i][1]);
    if (with_crc)
        cJSON_AddStringToObject(md, "crc32.__header__", "0000000000");
    size_t off = 0, total = 0;
    for (int i = 0; i < nt; i++) {
        char key[160], val[16];
        if (with_crc) {
            snprintf(key, sizeof key, "crc32.%s", ts[i].name);
            snprintf(val, sizeof val, "%lu", crc32(0, (const Bytef *)ts[i].p, (uInt)(ts[i].n * 4)));
            cJSON_AddStringToObject(md, key, val);
        }
        cJSON *o = cJSON_AddObjectToObject(root, ts[i].name);
        cJSON_AddStringToObject(o, "dtype", ts[i].dtype ? ts[i].dtype : "F32");
        double sh[2] = {(double)ts[i].shape[0], (double)ts[i].shape[1]};
        cJSON_AddItemToObject(o, "shape", cJSON_CreateDoubleArray(sh, ts[i].ndim));
        double of[2] = {(double)((int64_t)off + ts[i].offset_shift),
                        (double)((int64_t)(off + ts[i].n * 4) + ts[i].offset_shift)};
        cJSON_AddItemToObject(o, "data_offsets", cJSON_CreateDoubleArray(of, 2));
        off += ts[i].n * 4;
    }
    total = off;
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t jl = strlen(json), hl = (jl + 7) & ~(size_t)7;
    unsigned char *b = calloc(1, 8 + hl + total);
    uint64_t h64 = hl;
    memcpy(b, &h64, 8);
    memcpy(b + 8, json, jl);
    memset(b + 8 + jl, ' ', hl - jl);
    size_t at = 8 + hl;
    for (int i = 0; i < nt; i++) {
        memcpy(b + at, ts[i].p, ts[i].n * 4);
        at += ts[i].n * 4;
    }
    if (with_crc) {
        char *d = strstr((char *)b + 8, "\"crc32.__header__\":\"");
        assert_non_null(d);
        d += strlen("\"crc32.__header__\":\"");
        char crc[16];
        snprintf(crc, sizeof crc, "%010lu", crc32(0, b, (uInt)(8 + hl)));
        memcpy(d, crc, 10);
    }
    write_bytes(path, b, at);
    free(b);
    cJSON_free(json);
}

/* The good model's tensors: hidden.weight (5, 3), hidden.bias (5), dense_1.weight (4, 5),
 * dense_1.bias (4), preprocess.shift (3), preprocess.mul (3). */
static int model_tensors(fixture *fx, wt *ts)
{
    const float *w = ml_model_params(fx->m);
    int n = 0;
    for (int i = 0; i < ml_model_nsegments(fx->m); i++) {
        const ml_segment *s = ml_model_segment(fx->m, i);
        ts[n++] =
            (wt){s->name, NULL, s->cols == 1 ? 1 : 2, {s->rows, s->cols}, w + s->offset, s->len, 0};
    }
    ts[n++] = (wt){"preprocess.shift", NULL, 1, {3, 0}, fx->scaler.shift, 3, 0};
    ts[n++] = (wt){"preprocess.mul", NULL, 1, {3, 0}, fx->scaler.mul, 3, 0};
    return n;
}

static const char *const MODEL_META =
    "{\"input_dim\":3,\"layers\":[{\"type\":\"dense\",\"units\":5,\"activation\":\"relu\","
    "\"name\":\"hidden\"},{\"type\":\"activation\",\"activation\":\"tanh\",\"name\":null},"
    "{\"type\":\"dense\",\"units\":4,\"activation\":\"softmax\",\"name\":null}],"
    "\"loss\":\"categorical_crossentropy\"}";
static const char *const DATA_META =
    "{\"task\":\"classify\",\"num_classes\":4,\"class_names\":[\"eel\",\"cat\",\"dog\","
    "\"fox\"],\"scale\":\"standardize\"}";

/* Writes the model's tensors (as changed by the caller) with the standard metadata. */
static const char *build(fixture *fx, const char *name, const wt *ts, int nt, int with_crc,
                         const char *model_meta, const char *data_meta)
{
    const char *meta[][2] = {{"format", "pt"},
                             {"producer", "test"},
                             {"pstrain.model", model_meta ? model_meta : MODEL_META},
                             {"pstrain.data", data_meta ? data_meta : DATA_META}};
    const char *p = tmp_path(fx, name);
    write_st(p, meta, 4, ts, nt, with_crc);
    return p;
}

static void test_independent_writer_loads(void **state)
{
    fixture *fx = *state;
    wt ts[8];
    int nt = model_tensors(fx, ts);
    for (int with_crc = 0; with_crc < 2; with_crc++) {
        const char *p = build(fx, "ok.safetensors", ts, nt, with_crc, NULL, NULL);
        ckpt_model *c = NULL;
        pst_err err = {0};
        assert_int_equal(ckpt_load(p, 8, &c, &err), PST_OK);
        assert_memory_equal(ml_model_params(ckpt_model_net(c)), ml_model_params(fx->m),
                            ml_model_nparams(fx->m) * sizeof(float));
        assert_string_equal(ckpt_model_class_name(c, 3), "fox");
        ckpt_model_destroy(c);
    }
    /* Tensors in another order in the file are found by name. */
    wt rev[8];
    for (int i = 0; i < nt; i++)
        rev[i] = ts[nt - 1 - i];
    const char *p = build(fx, "rev.safetensors", rev, nt, 1, NULL, NULL);
    ckpt_model *c = NULL;
    pst_err err = {0};
    assert_int_equal(ckpt_load(p, 8, &c, &err), PST_OK);
    assert_memory_equal(ml_model_params(ckpt_model_net(c)), ml_model_params(fx->m),
                        ml_model_nparams(fx->m) * sizeof(float));
    ckpt_model_destroy(c);
}

/* Weights only, no pstrain metadata (as another tool would write them): ckpt_load_into
 * with the architecture from the caller takes them; ckpt_load cannot rebuild a model. */
static void test_no_metadata(void **state)
{
    fixture *fx = *state;
    wt ts[8];
    int nt = model_tensors(fx, ts) - 2; /* no preprocess tensors without pstrain.data */
    const char *const meta[][2] = {{"format", "pt"}};
    char p[1024];
    snprintf(p, sizeof p, "%s", tmp_path(fx, "bare.safetensors"));
    write_st(p, meta, 1, ts, nt, 0);
    expect_refused(p, "no pstrain.model", NULL);
    pst_err err = {0};
    ml_model *m = ml_model_create(&fx->spec, 3, 2, &err);
    ds_scaler sc;
    assert_int_equal(ckpt_load_into(p, m, &sc, &err), PST_OK);
    assert_memory_equal(ml_model_params(m), ml_model_params(fx->m),
                        ml_model_nparams(m) * sizeof(float));
    assert_int_equal(sc.kind, DS_SCALE_NONE);
    assert_float_equal(sc.mul[0], 1.0, 0.0);
    ds_scaler_fini(&sc);
    /* With preprocess tensors but nothing saying how they were fitted: unknown. */
    nt += 2;
    write_st(p, meta, 1, ts, nt, 0);
    assert_int_equal(ckpt_load_into(p, m, NULL, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "unknown tensor 'preprocess.shift'"));
    ml_model_destroy(m);
}

static void test_wrong_tensors(void **state)
{
    fixture *fx = *state;
    wt ts[8], t2[8];
    int nt = model_tensors(fx, ts);

    /* Missing: no dense_1.bias. */
    memcpy(t2, ts, sizeof ts);
    t2[3] = t2[4];
    t2[4] = t2[5];
    expect_refused(build(fx, "missing.st", t2, nt - 1, 1, NULL, NULL),
                   "tensor 'dense_1.bias' is missing", "[4]");
    /* Unknown: an extra tensor. */
    memcpy(t2, ts, sizeof ts);
    t2[nt] = (wt){"extra.weight", NULL, 1, {2, 0}, ts[0].p, 2, 0};
    expect_refused(build(fx, "unknown.st", t2, nt + 1, 1, NULL, NULL),
                   "unknown tensor 'extra.weight'", NULL);
    /* Wrong shape, same bytes: the weight transposed. */
    memcpy(t2, ts, sizeof ts);
    t2[2].shape[0] = 5;
    t2[2].shape[1] = 4;
    expect_refused(build(fx, "shape.st", t2, nt, 1, NULL, NULL),
                   "tensor 'dense_1.weight': shape [5, 4] but the model needs [4, 5]", NULL);
    /* A bias written as (OUT, 1). */
    memcpy(t2, ts, sizeof ts);
    t2[1].ndim = 2;
    t2[1].shape[1] = 1;
    expect_refused(build(fx, "bias2d.st", t2, nt, 1, NULL, NULL),
                   "tensor 'hidden.bias': shape [5, 1] but the model needs [5]", NULL);
    /* Shape and byte length disagree. */
    memcpy(t2, ts, sizeof ts);
    t2[0].shape[0] = 6;
    expect_refused(build(fx, "len.st", t2, nt, 1, NULL, NULL), "tensor 'hidden.weight'", "bytes");
    /* A dtype pstrain does not read. */
    memcpy(t2, ts, sizeof ts);
    t2[1].dtype = "F16";
    expect_refused(build(fx, "dtype.st", t2, nt, 1, NULL, NULL), "tensor 'hidden.bias'",
                   "dtype F16");
    /* Overlapping data, a gap, bytes nobody owns. */
    memcpy(t2, ts, sizeof ts);
    t2[1].offset_shift = -4;
    expect_refused(build(fx, "overlap.st", t2, nt, 1, NULL, NULL), "overlap", "hidden.bias");
    t2[1].offset_shift = 4;
    expect_refused(build(fx, "gap.st", t2, nt, 1, NULL, NULL), "belong to no tensor", NULL);
    /* NaN and Inf in a weight: named with the element. */
    float w[20];
    memcpy(w, ts[2].p, sizeof w);
    w[7] = NAN;
    memcpy(t2, ts, sizeof ts);
    t2[2].p = w;
    expect_refused(build(fx, "nan.st", t2, nt, 1, NULL, NULL),
                   "tensor 'dense_1.weight': element [1, 2] is NaN", NULL);
    w[7] = -INFINITY;
    expect_refused(build(fx, "inf.st", t2, nt, 0, NULL, NULL),
                   "tensor 'dense_1.weight': element [1, 2] is -Inf", NULL);
}

static void test_bad_checksums(void **state)
{
    fixture *fx = *state;
    wt ts[8];
    int nt = model_tensors(fx, ts);
    /* A checksum that does not match, given by another writer: still checked. */
    const char *meta[][2] = {{"producer", "test"},
                             {"pstrain.model", MODEL_META},
                             {"pstrain.data", DATA_META},
                             {"crc32.hidden.bias", "12345"}};
    char p[1024];
    snprintf(p, sizeof p, "%s", tmp_path(fx, "crc.st"));
    write_st(p, meta, 4, ts, nt, 0);
    expect_refused(p, "tensor 'hidden.bias' fails its checksum", NULL);
    meta[3][1] = "12x";
    write_st(p, meta, 4, ts, nt, 0);
    expect_refused(p, "not a decimal CRC-32", NULL);
    /* A checksum of a tensor the file does not have. */
    meta[3][0] = "crc32.nothing";
    meta[3][1] = "1";
    write_st(p, meta, 4, ts, nt, 0);
    expect_refused(p, "'crc32.nothing' names no tensor", NULL);
    /* Written by pstrain but without checksums: someone removed them. */
    meta[0][1] = "pstrain";
    write_st(p, meta, 3, ts, nt, 0);
    expect_refused(p, "corrupted", "crc32.__header__");
}

static void test_bad_containers(void **state)
{
    fixture *fx = *state;
    char p[1024];
    snprintf(p, sizeof p, "%s", tmp_path(fx, "raw.st"));
    struct {
        const char *header;
        const char *words;
    } cases[] = {
        {"{\"a\": [1, 2}", "not a valid JSON object"},
        {"[1, 2, 3]", "not a JSON object"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} xyz", "text after"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         "key 't' appears twice"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", "end before"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "shape[0]"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}",
         "unknown key 'x'"},
        {"{\"__metadata__\":{\"a\":1},\"t\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[0,4]}}",
         "not a string"},
        {"{\"__metadata__\":{\"pstrain.versoin\":\"1\"},\"t\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[0,4]}}",
         "unknown key 'pstrain.versoin'"},
        {"{\"__metadata__\":{\"pstrain.version\":\"2\"},\"t\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[0,4]}}",
         "version 2"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "no pstrain.model"},
    };
    float one = 1.0f;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t hl = strlen(cases[i].header);
        unsigned char *b = malloc(8 + hl + 4);
        uint64_t h64 = hl;
        memcpy(b, &h64, 8);
        memcpy(b + 8, cases[i].header, hl);
        memcpy(b + 8 + hl, &one, 4);
        write_bytes(p, b, 8 + hl + 4);
        expect_refused(p, cases[i].words, NULL);
        /* Trailing data bytes no tensor describes. */
        if (i == sizeof cases / sizeof cases[0] - 1) {
            unsigned char *b2 = malloc(8 + hl + 8);
            memcpy(b2, b, 8 + hl + 4);
            memcpy(b2 + 8 + hl + 4, &one, 4);
            write_bytes(p, b2, 8 + hl + 8);
            expect_refused(p, "4 bytes after the last tensor", NULL);
            free(b2);
        }
        free(b);
    }
    /* A header length beyond any checkpoint. */
    unsigned char big[16] = {0};
    uint64_t huge = (uint64_t)1 << 40;
    memcpy(big, &huge, 8);
    write_bytes(p, big, sizeof big);
    expect_refused(p, "over 100 MB", NULL);
}

static void test_bad_metadata(void **state)
{
    fixture *fx = *state;
    wt ts[8];
    int nt = model_tensors(fx, ts);
    struct {
        const char *model, *data, *words;
    } cases[] = {
        {"{\"input_dim\":3,\"layers\":[{\"type\":\"dense\",\"units\":5,\"activation\":\"relv\"}],"
         "\"loss\":\"mse\"}",
         NULL, "activation is not one of"},
        {"{\"input_dim\":3,\"layers\":[],\"loss\":\"mse\"}", NULL, "layers"},
        {"{\"input_dim\":0,\"layers\":[{\"type\":\"dense\",\"units\":5}],\"loss\":\"mse\"}", NULL,
         "input_dim"},
        {"{\"input_dim\":3,\"layers\":[{\"type\":\"dense\",\"units\":0,\"activation\":\"relu\"}],"
         "\"loss\":\"mse\"}",
         NULL, "units"},
        {"{\"input_dim\":3,\"layers\":[{\"type\":\"conv\",\"activation\":\"relu\"}],"
         "\"loss\":\"mse\"}",
         NULL, "type"},
        {"{\"input_dim\":3,\"loss\":\"mse\",\"layers\":[{\"type\":\"dense\",\"units\":2,"
         "\"activation\":\"relu\",\"dropout\":0.5}]}",
         NULL, "unknown key 'dropout'"},
        {"not json", NULL, "pstrain.model is not a JSON object"},
        /* A model far larger than the file: refused before it is built. */
        {"{\"input_dim\":100000,\"layers\":[{\"type\":\"dense\",\"units\":100000,"
         "\"activation\":\"softmax\"}],\"loss\":\"categorical_crossentropy\"}",
         NULL, "more parameters"},
        /* The right widths, another output: the loss needs a softmax. */
        {"{\"input_dim\":3,\"layers\":[{\"type\":\"dense\",\"units\":5,\"activation\":\"relu\","
         "\"name\":\"hidden\"},{\"type\":\"activation\",\"activation\":\"tanh\",\"name\":null},"
         "{\"type\":\"dense\",\"units\":4,\"activation\":\"linear\",\"name\":null}],"
         "\"loss\":\"categorical_crossentropy\"}",
         NULL, "softmax"},
        {NULL,
         "{\"task\":\"classify\",\"num_classes\":3,\"class_names\":null,"
         "\"scale\":\"standardize\"}",
         "num_classes 3"},
        {NULL,
         "{\"task\":\"classify\",\"num_classes\":4,\"class_names\":[\"a\"],"
         "\"scale\":\"standardize\"}",
         "class_names"},
        {NULL,
         "{\"task\":\"classify\",\"num_classes\":4,\"class_names\":[\"a\",\"b\",\"a\",\"c\"],"
         "\"scale\":\"standardize\"}",
         "'a' appears twice"},
        {NULL, "{\"task\":\"sort\",\"num_classes\":4,\"scale\":\"none\"}", "task"},
        {NULL, "{\"task\":\"classify\",\"num_classes\":4,\"scale\":\"log\"}", "scale"},
        /* scale none: the preprocess tensors are then not the model's. */
        {NULL, "{\"task\":\"classify\",\"num_classes\":4,\"scale\":\"none\"}",
         "unknown tensor 'preprocess.shift'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_refused(build(fx, "meta.st", ts, nt, 1, cases[i].model, cases[i].data),
                       cases[i].words, NULL);
    /* Without pstrain.data the task is unknown. */
    const char *meta[][2] = {{"pstrain.model", MODEL_META}};
    char p[1024];
    snprintf(p, sizeof p, "%s", tmp_path(fx, "nodata.st"));
    write_st(p, meta, 1, ts, nt - 2, 1);
    expect_refused(p, "no pstrain.data", NULL);
}

/* ---- Training-state files (optimizer state, shard checkpoints) ------------------------- */

/* An adam state over n parameters with every buffer entry distinct, and t steps. */
static opt_state *filled_opt(opt_kind kind, size_t n, int64_t t, float base)
{
    opt_config c;
    opt_config_default(&c, kind);
    opt_state *os = opt_state_create(&c, n, NULL);
    assert_non_null(os);
    for (int b = 0; b < opt_state_nbuf(os); b++)
        for (size_t i = 0; i < n; i++)
            opt_state_buf(os, b)[i] = base + (float)b * 1000.0f + (float)i * 0.125f;
    opt_state_set_step(os, t);
    return os;
}

static void test_state_round_trip(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    const char *path = tmp_path(fx, "opt.safetensors");
    float w[7] = {1.5f, -2.0f, 0.0f, 3.25f, 1e-30f, -1e30f, 7.0f};
    opt_state *adam = filled_opt(OPT_ADAM, 5, 17, 0.5f);
    ckpt_state *st = ckpt_state_create("optimizer", &err);
    assert_non_null(st);
    assert_int_equal(ckpt_state_set_int(st, "epoch", 3, &err), PST_OK);
    assert_int_equal(ckpt_state_set_int(st, "big", INT64_MAX, &err), PST_OK);
    assert_int_equal(ckpt_state_set_int(st, "neg", -42, &err), PST_OK);
    assert_int_equal(ckpt_state_set_double(st, "loss_sum", 0.1 + 0.2, &err), PST_OK);
    assert_int_equal(ckpt_state_set_double(st, "tiny", 4.9406564584124654e-324, &err), PST_OK);
    assert_int_equal(ckpt_state_set_str(st, "job_hash", "00ff00ff00ff00ff", &err), PST_OK);
    assert_int_equal(ckpt_state_add_tensor(st, "weights", w, 7, &err), PST_OK);
    assert_int_equal(ckpt_state_add_opt(st, OPT_ADAM, adam, &err), PST_OK);
    assert_int_equal(ckpt_state_save(st, path, &err), PST_OK);
    ckpt_state_destroy(st);

    ckpt_state *in = NULL;
    assert_int_equal(ckpt_state_load(path, "optimizer", &in, &err), PST_OK);
    assert_string_equal(ckpt_state_kind(in), "optimizer");
    int64_t v;
    double d;
    const char *s;
    assert_int_equal(ckpt_state_get_int(in, "epoch", &v, &err), PST_OK);
    assert_int_equal(v, 3);
    assert_int_equal(ckpt_state_get_int(in, "big", &v, &err), PST_OK);
    assert_true(v == INT64_MAX);
    assert_int_equal(ckpt_state_get_int(in, "neg", &v, &err), PST_OK);
    assert_int_equal(v, -42);
    /* Doubles come back bit for bit, subnormals included. */
    assert_int_equal(ckpt_state_get_double(in, "loss_sum", &d, &err), PST_OK);
    assert_true(d == 0.1 + 0.2);
    assert_int_equal(ckpt_state_get_double(in, "tiny", &d, &err), PST_OK);
    assert_true(d == 4.9406564584124654e-324);
    assert_int_equal(ckpt_state_get_str(in, "job_hash", &s, &err), PST_OK);
    assert_string_equal(s, "00ff00ff00ff00ff");
    const float *p;
    assert_int_equal(ckpt_state_get_tensor(in, "weights", 7, &p, &err), PST_OK);
    assert_memory_equal(p, w, sizeof w);
    assert_int_equal((uintptr_t)p % sizeof(float), 0);

    /* The optimizer state restores into a fresh one exactly: moments and step count. */
    assert_int_equal(ckpt_state_check_opt(in, OPT_ADAM, 5, &err), PST_OK);
    opt_state *back = filled_opt(OPT_ADAM, 5, 0, 99.0f);
    ckpt_state_restore_opt(in, OPT_ADAM, back);
    assert_int_equal(opt_state_step(back), 17);
    for (int b = 0; b < 2; b++)
        assert_memory_equal(opt_state_buf(back, b), opt_state_buf(adam, b), 5 * sizeof(float));
    ckpt_state_destroy(in);
    opt_state_destroy(back);
    opt_state_destroy(adam);

    /* One buffer (momentum: opt.velocity) and none (sgd: only the step count). */
    opt_state *mom = filled_opt(OPT_MOMENTUM, 3, 4, -1.0f), *sgd = filled_opt(OPT_SGD, 3, 9, 0);
    for (int k = 0; k < 2; k++) {
        opt_kind kind = k ? OPT_SGD : OPT_MOMENTUM;
        opt_state *os = k ? sgd : mom;
        st = ckpt_state_create("optimizer", &err);
        assert_int_equal(ckpt_state_add_opt(st, kind, os, &err), PST_OK);
        assert_int_equal(ckpt_state_save(st, path, &err), PST_OK);
        ckpt_state_destroy(st);
        assert_int_equal(ckpt_state_load(path, "optimizer", &in, &err), PST_OK);
        assert_int_equal(ckpt_state_check_opt(in, kind, 3, &err), PST_OK);
        opt_state *b2 = filled_opt(kind, 3, 0, 50.0f);
        ckpt_state_restore_opt(in, kind, b2);
        assert_int_equal(opt_state_step(b2), k ? 9 : 4);
        if (!k)
            assert_memory_equal(opt_state_buf(b2, 0), opt_state_buf(mom, 0), 3 * sizeof(float));
        assert_int_equal(ckpt_state_get_tensor(in, "opt.velocity", 3, &p, &err),
                         k ? PST_ERR_DATA : PST_OK);
        opt_state_destroy(b2);
        ckpt_state_destroy(in);
    }
    opt_state_destroy(mom);
    opt_state_destroy(sgd);
    unlink(path);
}

/* The load or getter fails with PST_ERR_DATA and a one-line message holding `word`. */
static void expect_state_error(int rc, const pst_err *err, int code, const char *word)
{
    if (rc != code || !strstr(err->msg, word) || strchr(err->msg, '\n'))
        fail_msg("rc %d, message '%s', expected %d and '%s'", rc, err->msg, code, word);
}

static void test_state_refusals(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    const char *path = tmp_path(fx, "st.safetensors");
    char p2[1100];
    snprintf(p2, sizeof p2, "%s", path);
    opt_state *adam = filled_opt(OPT_ADAM, 4, 2, 1.0f);
    ckpt_state *st = ckpt_state_create("shard", &err), *in = (ckpt_state *)1;
    /* Writing: bad keys and names, repeats, non-finite values. */
    expect_state_error(ckpt_state_set_int(st, "a b", 1, &err), &err, PST_ERR_ARG, "bad state key");
    expect_state_error(ckpt_state_set_int(st, "", 1, &err), &err, PST_ERR_ARG, "bad state key");
    expect_state_error(ckpt_state_set_str(st, "kind", "x", &err), &err, PST_ERR_ARG, "set twice");
    expect_state_error(ckpt_state_set_str(st, "q", "a\"b", &err), &err, PST_ERR_ARG, "escapes");
    expect_state_error(ckpt_state_set_double(st, "d", NAN, &err), &err, PST_ERR_NUMERIC, "state.d");
    expect_state_error(ckpt_state_add_tensor(st, "crc32.x", (float[]){1}, 1, &err), &err,
                       PST_ERR_ARG, "bad tensor name");
    float bad[2] = {1.0f, INFINITY};
    assert_int_equal(ckpt_state_add_tensor(st, "weights", bad, 2, &err), PST_OK);
    expect_state_error(ckpt_state_add_tensor(st, "weights", bad, 2, &err), &err, PST_ERR_ARG,
                       "added twice");
    expect_state_error(ckpt_state_save(st, p2, &err), &err, PST_ERR_NUMERIC, "element 1");
    assert_int_equal(access(p2, F_OK), -1); /* nothing written, not even a temporary file */
    ckpt_state_destroy(st);

    st = ckpt_state_create("shard", &err);
    assert_int_equal(ckpt_state_set_int(st, "clock", 12, &err), PST_OK);
    assert_int_equal(ckpt_state_set_str(st, "word", "abc", &err), PST_OK);
    assert_int_equal(ckpt_state_add_opt(st, OPT_ADAM, adam, &err), PST_OK);
    assert_int_equal(ckpt_state_save(st, p2, &err), PST_OK);
    ckpt_state_destroy(st);
    /* Reading: the wrong kind, a model checkpoint, and the other way round. */
    expect_state_error(ckpt_state_load(p2, "optimizer", &in, &err), &err, PST_ERR_DATA,
                       "holds shard state, expected optimizer");
    assert_null(in);
    expect_state_error(ckpt_state_load(fx->good, "shard", &in, &err), &err, PST_ERR_DATA,
                       "not a training-state file");
    expect_refused(p2, "no pstrain.model", NULL);
    /* Getters name the file and the key. */
    assert_int_equal(ckpt_state_load(p2, "shard", &in, &err), PST_OK);
    int64_t v;
    const float *p;
    expect_state_error(ckpt_state_get_int(in, "nope", &v, &err), &err, PST_ERR_DATA,
                       "state.nope is missing");
    assert_int_equal(strncmp(err.msg, p2, strlen(p2)), 0);
    expect_state_error(ckpt_state_get_int(in, "word", &v, &err), &err, PST_ERR_DATA,
                       "'abc' is not an integer");
    expect_state_error(ckpt_state_get_tensor(in, "opt.m", 5, &p, &err), &err, PST_ERR_DATA,
                       "'opt.m' holds 4 floats, expected 5");
    expect_state_error(ckpt_state_get_tensor(in, "weights", 4, &p, &err), &err, PST_ERR_DATA,
                       "'weights' is missing");
    expect_state_error(ckpt_state_check_opt(in, OPT_MOMENTUM, 4, &err), &err, PST_ERR_DATA,
                       "optimizer state of adam, but the job uses momentum");
    expect_state_error(ckpt_state_check_opt(in, OPT_ADAM, 8, &err), &err, PST_ERR_DATA,
                       "holds 4 floats, expected 8");
    ckpt_state_destroy(in);
    opt_state_destroy(adam);
    unlink(p2);
}

/* Every truncation and every flipped byte of a state file, and random bursts of flipped
 * bytes, are refused whole with one line naming the file. */
static void test_state_damage(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    char path[1100], bad[1100];
    snprintf(path, sizeof path, "%s", tmp_path(fx, "good-state.safetensors"));
    snprintf(bad, sizeof bad, "%s", tmp_path(fx, "bad-state.safetensors"));
    opt_state *adam = filled_opt(OPT_ADAM, 6, 5, 2.0f);
    ckpt_state *st = ckpt_state_create("optimizer", &err), *in = NULL;
    assert_int_equal(ckpt_state_set_int(st, "step", 5, &err), PST_OK);
    assert_int_equal(ckpt_state_add_opt(st, OPT_ADAM, adam, &err), PST_OK);
    assert_int_equal(ckpt_state_save(st, path, &err), PST_OK);
    ckpt_state_destroy(st);
    opt_state_destroy(adam);
    size_t n;
    unsigned char *b = read_bytes(path, &n);
    for (size_t len = 0; len < n; len++) {
        write_bytes(bad, b, len);
        in = (ckpt_state *)1;
        assert_int_equal(ckpt_state_load(bad, "optimizer", &in, &err), PST_ERR_DATA);
        assert_null(in);
        /* A clear error: one line naming the file and saying it is cut short. */
        if (!strstr(err.msg, bad) || strchr(err.msg, '\n') ||
            !strstr(err.msg, len == 0 ? "empty" : "truncated"))
            fail_msg("cut at %zu: unclear message '%s'", len, err.msg);
    }
    /* Every byte flipped with 0x20 and with a random mask, then random bursts of 2 to 9
     * flipped bytes anywhere (what a torn sector or bad memory leaves). */
    rng_state r;
    rng_seed(&r, 2024);
    for (size_t trial = 0; trial < 3 * n + 300; trial++) {
        size_t at[9];
        unsigned char mask[9];
        int k = trial < 2 * n ? 1 : 2 + (int)rng_below(&r, 8);
        for (int j = 0; j < k; j++) {
            at[j] = trial < 2 * n ? trial % n : (size_t)rng_below(&r, n);
            mask[j] = trial < n ? 0x20 : (unsigned char)(1 + rng_below(&r, 255));
            b[at[j]] ^= mask[j];
        }
        write_bytes(bad, b, n);
        in = (ckpt_state *)1;
        int rc = ckpt_state_load(bad, "optimizer", &in, &err);
        if (rc != PST_ERR_DATA || in || !strstr(err.msg, bad) || strchr(err.msg, '\n'))
            fail_msg("trial %zu (%d bytes from %zu) flipped: load gave %d (%s)", trial, k, at[0],
                     rc, err.msg);
        for (int j = k - 1; j >= 0; j--)
            b[at[j]] ^= mask[j];
    }
    free(b);
    unlink(bad);
    unlink(path);
}

/* ---- Checkpoint folders ------------------------------------------------------------------ */

static void make_entry(const char *dir, const char *name, int folder)
{
    char p[1500];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (folder) {
        assert_int_equal(mkdir(p, 0777), 0);
        snprintf(p, sizeof p, "%s/%s/model.safetensors", dir, name);
    }
    write_bytes(p, name, strlen(name));
}

static void test_folders(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    char dir[1100], p[1300], tmp[1300];
    snprintf(dir, sizeof dir, "%s/ck/a/b", fx->dir);
    int64_t tags[8];
    int n = -1;
    assert_int_equal(ckpt_list(dir, "ckpt-", "", tags, 8, &n, &err), PST_OK);
    assert_int_equal(n, 0); /* no folder yet: nothing to resume from, not an error */
    assert_int_equal(fs_mkdirs(dir, &err), PST_OK);
    assert_int_equal(fs_mkdirs(dir, &err), PST_OK);
    make_entry(dir, "ckpt-5", 1);
    make_entry(dir, "ckpt-40", 1);
    make_entry(dir, "ckpt-12", 1);
    make_entry(dir, "ckpt-7.tmp.1", 1); /* a write that died */
    make_entry(dir, "ckpt-x", 1);
    make_entry(dir, "ckpt-3junk", 0);
    make_entry(dir, "ckpt-", 0);
    make_entry(dir, "server-0-clock-9.safetensors", 0);
    make_entry(dir, "server-0-clock-10.safetensors", 0);
    make_entry(dir, "server-0-clock-11.safetensors.tmp.77", 0);
    make_entry(dir, "server-10-clock-99.safetensors", 0);
    assert_int_equal(ckpt_list(dir, "ckpt-", "", tags, 8, &n, &err), PST_OK);
    assert_int_equal(n, 3);
    assert_true(tags[0] == 40 && tags[1] == 12 && tags[2] == 5);
    assert_int_equal(ckpt_list(dir, "ckpt-", "", tags, 2, &n, &err), PST_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ckpt_list(dir, "server-0-clock-", ".safetensors", tags, 8, &n, &err), PST_OK);
    assert_int_equal(n, 2);
    assert_true(tags[0] == 10 && tags[1] == 9);

    /* Prune keeps the 2 newest and removes leftovers; other names stay. */
    assert_int_equal(ckpt_prune(dir, "ckpt-", "", 2, &err), PST_OK);
    assert_int_equal(ckpt_list(dir, "ckpt-", "", tags, 8, &n, &err), PST_OK);
    assert_int_equal(n, 2);
    assert_true(tags[0] == 40 && tags[1] == 12);
    snprintf(p, sizeof p, "%s/ckpt-7.tmp.1", dir);
    assert_int_equal(access(p, F_OK), -1);
    snprintf(p, sizeof p, "%s/ckpt-x", dir);
    assert_int_equal(access(p, F_OK), 0);
    assert_int_equal(ckpt_prune(dir, "server-0-clock-", ".safetensors", 1, &err), PST_OK);
    assert_int_equal(ckpt_list(dir, "server-0-clock-", ".safetensors", tags, 8, &n, &err), PST_OK);
    assert_true(n == 1 && tags[0] == 10);
    snprintf(p, sizeof p, "%s/server-10-clock-99.safetensors", dir);
    assert_int_equal(access(p, F_OK), 0);

    /* A folder written atomically replaces an older one of the same name whole. */
    snprintf(p, sizeof p, "%s/ckpt-40", dir);
    assert_int_equal(ckpt_dir_begin(p, tmp, sizeof tmp, &err), PST_OK);
    assert_non_null(strstr(tmp, "ckpt-40.tmp."));
    char f[1400];
    snprintf(f, sizeof f, "%s/optimizer.safetensors", tmp);
    write_bytes(f, "new", 3);
    assert_int_equal(ckpt_list(dir, "ckpt-", "", tags, 8, &n, &err), PST_OK);
    assert_int_equal(n, 2); /* the unfinished folder is not a checkpoint */
    assert_int_equal(ckpt_dir_commit(tmp, p, &err), PST_OK);
    snprintf(f, sizeof f, "%s/optimizer.safetensors", p);
    assert_int_equal(access(f, F_OK), 0);
    snprintf(f, sizeof f, "%s/model.safetensors", p);
    assert_int_equal(access(f, F_OK), -1); /* the old folder's file went with it */
    assert_int_equal(access(tmp, F_OK), -1);
    /* An aborted write leaves nothing. */
    snprintf(p, sizeof p, "%s/ckpt-41", dir);
    assert_int_equal(ckpt_dir_begin(p, tmp, sizeof tmp, &err), PST_OK);
    ckpt_dir_abort(tmp);
    assert_int_equal(access(tmp, F_OK), -1);

    /* Those after a resume point go; the one resumed from and older stay. */
    make_entry(dir, "ckpt-50", 1);
    make_entry(dir, "ckpt-60", 0);
    assert_int_equal(ckpt_remove_newer(dir, "ckpt-", "", 40, &err), PST_OK);
    assert_int_equal(ckpt_list(dir, "ckpt-", "", tags, 8, &n, &err), PST_OK);
    assert_true(n == 2 && tags[0] == 40 && tags[1] == 12);
    assert_int_equal(ckpt_remove_newer(dir, "ckpt-", "", 12, &err), PST_OK);
    assert_int_equal(ckpt_list(dir, "ckpt-", "", tags, 8, &n, &err), PST_OK);
    assert_true(n == 1 && tags[0] == 12);

    /* Clean up: everything named like a checkpoint, then the helper names, the folders. */
    assert_int_equal(ckpt_prune(dir, "ckpt-", "", 0, &err), PST_OK);
    assert_int_equal(ckpt_prune(dir, "server-0-clock-", ".safetensors", 0, &err), PST_OK);
    assert_int_equal(ckpt_prune(dir, "server-10-clock-", ".safetensors", 0, &err), PST_OK);
    const char *rest[] = {"ckpt-x/model.safetensors", "ckpt-x", "ckpt-3junk", "ckpt-"};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, rest[i]);
        assert_int_equal(remove(p), 0);
    }
    for (int up = 0; up < 3; up++) {
        assert_int_equal(rmdir(dir), 0);
        *strrchr(dir, '/') = '\0';
    }
}

/* A fresh run's set-aside: entries of one prefix move to dir/previous-run (replacing those
 * of a run earlier still), other names stay; dropping removes them and, once empty, the
 * folder. */
static void test_set_aside(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    char dir[1100], aside[1200], p[1300];
    snprintf(dir, sizeof dir, "%s/aside", fx->dir);
    snprintf(aside, sizeof aside, "%s/" CKPT_ASIDE, dir);
    int moved = -1, removed = -1;
    int64_t tags[8];
    int n;
    assert_int_equal(ckpt_set_aside(dir, "ckpt-", "", &moved, &err), PST_OK);
    assert_int_equal(moved, 0); /* no folder: nothing to keep */
    assert_int_equal(access(aside, F_OK), -1);
    assert_int_equal(fs_mkdirs(dir, &err), PST_OK);
    make_entry(dir, "ckpt-20", 1);
    make_entry(dir, "ckpt-40", 1);
    make_entry(dir, "server-0-clock-9.safetensors", 0);
    assert_int_equal(fs_mkdirs(aside, &err), PST_OK);
    make_entry(aside, "ckpt-7", 1); /* set aside by a run before: replaced */
    assert_int_equal(ckpt_set_aside(dir, "ckpt-", "", &moved, &err), PST_OK);
    assert_int_equal(moved, 2);
    assert_int_equal(ckpt_list(dir, "ckpt-", "", tags, 8, &n, &err), PST_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ckpt_list(aside, "ckpt-", "", tags, 8, &n, &err), PST_OK);
    assert_true(n == 2 && tags[0] == 40 && tags[1] == 20);
    snprintf(p, sizeof p, "%s/ckpt-40/model.safetensors", aside);
    assert_int_equal(access(p, F_OK), 0); /* moved whole */
    assert_int_equal(ckpt_set_aside(dir, "server-0-clock-", ".safetensors", &moved, &err), PST_OK);
    assert_int_equal(moved, 1);
    /* Dropping one prefix leaves the other's entries and the folder. */
    assert_int_equal(ckpt_drop_aside(dir, "ckpt-", "", &removed, &err), PST_OK);
    assert_int_equal(removed, 2);
    assert_int_equal(ckpt_list(aside, "ckpt-", "", tags, 8, &n, &err), PST_OK);
    assert_int_equal(n, 0);
    assert_int_equal(access(aside, F_OK), 0);
    assert_int_equal(ckpt_drop_aside(dir, "server-0-clock-", ".safetensors", &removed, &err),
                     PST_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(access(aside, F_OK), -1);
    assert_int_equal(rmdir(dir), 0);
}

/* ckpt_init_from (fine-tuning): parameters by name; the model's other parameters and the
 * file's other tensors are reported, not refused; a reshaped tensor, or a file that shares
 * no name with the model, is refused with the model as it was; the file is only read. */
static void test_init_from(void **state)
{
    fixture *fx = *state;
    pst_err err = {0};
    /* The fixture's body ("hidden") under a new 2-class head "head". */
    ml_layer_spec L[3] = {DENSE_N(5, ACT_RELU, "hidden"),
                          LAYER_OF(&ml_layer_activation, 0, ACT_TANH, NULL),
                          DENSE_N(2, ACT_SOFTMAX, "head")};
    ml_model_spec spec = {L, 3, ML_LOSS_CCE, ML_INIT_AUTO};
    ml_model *m = ml_model_create(&spec, 3, 2, &err);
    assert_non_null(m);
    ml_model_init(m, 9);
    float seeded[64];
    size_t P = ml_model_nparams(m);
    assert_true(P <= 64);
    memcpy(seeded, ml_model_params(m), P * sizeof(float));
    unsigned char loaded[4] = {9, 9, 9, 9};
    ckpt_init_report rep;
    assert_int_equal(ckpt_init_from(fx->good, m, loaded, &rep, &err), PST_OK);
    assert_int_equal(rep.loaded, 2);
    assert_int_equal(rep.fresh, 2);
    assert_int_equal(rep.skipped, 2); /* preprocess.* are not counted */
    assert_string_equal(rep.fresh_names, "head.weight, head.bias");
    assert_string_equal(rep.skipped_names, "dense_1.weight, dense_1.bias");
    assert_true(loaded[0] == 1 && loaded[1] == 1 && loaded[2] == 0 && loaded[3] == 0);
    size_t body = 5 * 3 + 5;
    assert_memory_equal(ml_model_params(m), ml_model_params(fx->m), body * sizeof(float));
    assert_memory_equal(ml_model_params(m) + body, seeded + body, (P - body) * sizeof(float));

    /* hidden resized without a new name: refused, naming it; nothing copied. */
    L[0].val[0].i = 6; /* units */
    ml_model *r = ml_model_create(&spec, 3, 2, &err);
    assert_non_null(r);
    ml_model_init(r, 9);
    memcpy(seeded, ml_model_params(r), ml_model_nparams(r) * sizeof(float));
    assert_int_equal(ckpt_init_from(fx->good, r, NULL, &rep, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "tensor 'hidden.weight': shape [5, 3] but the model needs "
                                    "[6, 3]"));
    assert_memory_equal(ml_model_params(r), seeded, ml_model_nparams(r) * sizeof(float));
    assert_int_equal(rep.loaded, 0);
    ml_model_destroy(r);

    /* No name in common: the wrong checkpoint, not a model to start afresh. */
    L[0].val[0].i = 5;
    L[0].name = "other";
    r = ml_model_create(&spec, 3, 2, &err);
    assert_non_null(r);
    assert_int_equal(ckpt_init_from(fx->good, r, NULL, &rep, &err), PST_ERR_DATA);
    assert_non_null(strstr(err.msg, "holds none of the model's parameters (other.weight, "
                                    "other.bias, head.weight, head.bias)"));
    ml_model_destroy(r);
    assert_int_equal(ckpt_init_from(tmp_path(fx, "absent.safetensors"), m, NULL, &rep, &err),
                     PST_ERR_IO);

    size_t n;
    unsigned char *now = read_bytes(fx->good, &n);
    assert_int_equal(n, fx->size);
    assert_memory_equal(now, fx->bytes, n);
    free(now);
    ml_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_from),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_regression_round_trip),
        cmocka_unit_test(test_load_into),
        cmocka_unit_test(test_save_replaces_or_keeps),
        cmocka_unit_test(test_save_out_of_memory),
        cmocka_unit_test(test_set_max_batch),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_header_flips),
        cmocka_unit_test(test_data_flips),
        cmocka_unit_test(test_independent_writer_loads),
        cmocka_unit_test(test_no_metadata),
        cmocka_unit_test(test_wrong_tensors),
        cmocka_unit_test(test_bad_checksums),
        cmocka_unit_test(test_bad_containers),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_state_round_trip),
        cmocka_unit_test(test_state_refusals),
        cmocka_unit_test(test_state_damage),
        cmocka_unit_test(test_folders),
        cmocka_unit_test(test_set_aside),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
