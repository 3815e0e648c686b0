/* cli/cmd_generate.c -- `pstrain generate`: text sampled from a language model.
 *
 * The prompt is encoded with the model's tokenizer (cli/lm.c); each new token comes from
 * one forward pass over the last T ids (T = the model's context), placed at positions
 * 0..n-1 of the window with the rest zero: attention is causal, so the logits at position
 * n-1 see only the ids before them, and the zeros change nothing. The token is drawn
 * from softmax(logits / temperature) over the top_k largest logits (0: all), with one
 * seeded stream (base/rng.h); temperature 0 takes the argmax (the lowest id of a tie). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "cli/cli.h"
#include "data/textwin.h"
#include "tok/tok.h"

static const char generate_synopsis[] =
    "usage: pstrain generate CKPT --prompt TEXT [options]\n"
    "\n"
    "Prints TEXT and its continuation sampled from the language model CKPT (a run\n"
    "folder, a checkpoint folder of the run, its model file, or the job file), with\n"
    "the job's tokenizer. The same seed gives the same text; --temperature 0 is\n"
    "greedy decoding.\n";

typedef struct {
    const char *tokenizer;
    const char *prompt;
    int max_tokens;
    double temperature;
    int top_k;
    long long seed;
} gen_args;

/* The tokenizer of lm: its folder's files, or bytes. */
static int open_tokenizer(const cli_lm *lm, tok_bpe **tk, pst_err *err)
{
    char vocab[4200], merges[4200];
    if (!lm->tokenizer)
        return tok_bpe_create(tk, NULL, NULL, err);
    int rc = ds_tokenizer_files(lm->tokenizer, vocab, merges, sizeof vocab, err);
    return rc ? rc : tok_bpe_create(tk, vocab, merges, err);
}

/* The next id from logits (V, all finite): see the file's comment. p is (V) scratch. */
static int32_t sample(const float *logits, int V, const gen_args *a, double *p, rng_state *r)
{
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best])
            best = v;
    if (a->temperature <= 0.0)
        return best;
    /* the k-th largest logit: ids below it are out (k = 0 or >= V: none) */
    float cut = -FLT_MAX;
    if (a->top_k > 0 && a->top_k < V) {
        for (int v = 0; v < V; v++)
            p[v] = logits[v];
        for (int k = 0; k < a->top_k; k++) { /* k passes of selection: k is small */
            int m = -1;
            for (int v = 0; v < V; v++)
                if (p[v] > -DBL_MAX && (m < 0 || p[v] > p[m]))
                    m = v;
            cut = (float)p[m];
            p[m] = -DBL_MAX;
        }
    }
    double sum = 0.0;
    for (int v = 0; v < V; v++) {
        p[v] = logits[v] >= cut ? exp((logits[v] - logits[best]) / a->temperature) : 0.0;
        sum += p[v];
    }
    double u = (double)(rng_next(r) >> 11) * 0x1.0p-53 * sum, acc = 0.0;
    for (int v = 0; v < V; v++) {
        acc += p[v];
        if (p[v] > 0.0 && u < acc)
            return v;
    }
    return best;
}

static int generate(cli_lm *lm, const gen_args *a, const volatile sig_atomic_t *stop, pst_err *err)
{
    tok_bpe *tk = NULL;
    tok_ids ids = {0};
    float *x = NULL;
    double *p = NULL;
    char *text = NULL;
    size_t len = 0;
    const int T = lm->context, V = lm->vocab;
    int rc = open_tokenizer(lm, &tk, err);
    if (rc)
        goto cleanup;
    if (tok_vocab_size(tk) > V) {
        rc = pst_err_set(err, PST_ERR_CONFIG,
                         "the tokenizer has %d tokens, the model %d (another tokenizer than the "
                         "model's?)",
                         tok_vocab_size(tk), V);
        goto cleanup;
    }
    if ((rc = tok_encode(tk, a->prompt, strlen(a->prompt), &ids, err)))
        goto cleanup;
    if (ids.n == 0 || ids.n > (size_t)T) {
        rc = pst_err_set(err, PST_ERR_CONFIG,
                         "--prompt: %zu tokens; the model takes 1 to %d (its context)", ids.n, T);
        goto cleanup;
    }
    if ((rc = tok_ids_reserve(&ids, (size_t)a->max_tokens)) ||
        !(x = calloc((size_t)T, sizeof *x)) || !(p = malloc(sizeof *p * (size_t)V))) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    rng_state r;
    rng_seed(&r, (uint64_t)a->seed);
    ml_model *net = ckpt_model_net(lm->ck);
    for (int i = 0; i < a->max_tokens && !*stop; i++) {
        size_t n = ids.n < (size_t)T ? ids.n : (size_t)T;
        const int32_t *win = ids.ids + ids.n - n;
        for (size_t j = 0; j < (size_t)T; j++)
            x[j] = j < n ? (float)win[j] : 0.0f;
        const float *y = ml_model_forward(net, x, 1) + (n - 1) * (size_t)V; /* (V) */
        /* NaN or infinite logits (a diverged or damaged model) have no distribution to
         * sample from, and would defeat the top-k selection's counting. */
        for (int v = 0; v < V; v++)
            if (!isfinite(y[v])) {
                rc = pst_err_set(err, PST_ERR_NUMERIC,
                                 "the model's logit of token %d is %g after %zu tokens: its "
                                 "weights are not usable (diverged?)",
                                 v, (double)y[v], ids.n);
                goto cleanup;
            }
        ids.ids[ids.n++] = sample(y, V, a, p, &r);
    }
    if ((rc = tok_decode(tk, ids.ids, ids.n, &text, &len, err)))
        goto cleanup;
    if (fwrite(text, 1, len, stdout) != len || fputc('\n', stdout) == EOF || fflush(stdout) != 0)
        rc = pst_err_set(err, PST_ERR_IO, "stdout: cannot write");
cleanup:
    free(text);
    free(p);
    free(x);
    tok_ids_fini(&ids);
    tok_bpe_destroy(tk);
    return rc;
}

int cmd_generate(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    gen_args a = {.max_tokens = 50, .temperature = 1.0, .top_k = 0, .seed = 0};
    const cli_opt opts[] = {
        {.name = "prompt",
         .kind = CLI_STR,
         .dest = &a.prompt,
         .meta = "TEXT",
         .help = "the text to continue (required; at most the model's context in tokens)"},
        {.name = "max-tokens",
         .kind = CLI_INT,
         .dest = &a.max_tokens,
         .meta = "N",
         .lo = 0,
         .hi = 1 << 20,
         .help = "tokens to generate (default 50)"},
        {.name = "temperature",
         .kind = CLI_NUM,
         .dest = &a.temperature,
         .meta = "T",
         .lo = 0,
         .hi = 1000,
         .help = "softmax temperature (default 1; 0: greedy)"},
        {.name = "top-k",
         .kind = CLI_INT,
         .dest = &a.top_k,
         .meta = "K",
         .lo = 0,
         .hi = 1 << 24,
         .help = "sample among the K most likely tokens (default 0: all)"},
        {.name = "seed",
         .kind = CLI_I64,
         .dest = &a.seed,
         .meta = "S",
         .help = "seed of the sampling (default 0)"},
        {.name = "tokenizer",
         .kind = CLI_STR,
         .dest = &a.tokenizer,
         .meta = "DIR",
         .help = "tokenizer files (default: the job's data.tokenizer)"},
        {0}};
    const cli_spec spec = {
        .cmd = "generate", .synopsis = generate_synopsis, .opts = opts, .max_pos = 1};
    cli_args args;
    int ec = cli_parse(&spec, argc, argv, &args);
    if (ec >= 0)
        return ec;
    if (args.npos != 1 || !a.prompt) {
        cli_args_fini(&args);
        fprintf(stderr, "pstrain generate: needs a checkpoint and --prompt TEXT (see --help)\n");
        return EXIT_USAGE;
    }
    pst_err err = {0};
    cli_lm lm;
    int rc = cli_lm_open(&lm, args.pos[0], a.tokenizer, 1, &err);
    if (!rc)
        rc = generate(&lm, &a, stop, &err);
    cli_lm_close(&lm);
    cli_args_fini(&args);
    if (rc) {
        fprintf(stderr, "pstrain generate: %s\n", err.msg);
        return cli_exit_code(rc);
    }
    return *stop ? cli_stop_exit_code(*stop) : EXIT_OK;
}
