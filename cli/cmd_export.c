/* cli/cmd_export.c -- `pstrain export` and `pstrain prune`:
 *   export [--format hf] CKPT OUTDIR   a pstrain GPT-2 checkpoint as a Hugging Face folder
 *                                      (ckpt/hf.h): OUTDIR/model.safetensors + config.json
 *   export CKPT OUT --dtype fp16|int8  a smaller pstrain model file (ckpt/quant.h)
 *   prune CKPT OUT --sparsity S        magnitude pruning (ckpt/quant.h)
 * Each reads the checkpoint whole and checks it before anything is written; the Hugging
 * Face export keeps OUTDIR's files unless --force, as does --dtype an existing OUT. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt/hf.h"
#include "ckpt/quant.h"
#include "cli/cli.h"

static const char export_synopsis[] =
    "usage: pstrain export [--format hf] [--force] CKPT OUTDIR\n"
    "       pstrain export [--force] CKPT OUT --dtype fp16|int8\n"
    "\n"
    "CKPT is a model.safetensors written by pstrain, or a folder holding one (a run\n"
    "folder, a ckpt-N folder).\n"
    "\n"
    "Without --dtype: writes the GPT-2 of CKPT as a Hugging Face GPT-2 folder:\n"
    "OUTDIR/model.safetensors (wte, wpe, h.N.ln_1, h.N.attn.c_attn, h.N.attn.c_proj,\n"
    "h.N.ln_2, h.N.mlp.c_fc, h.N.mlp.c_proj, ln_f; Conv1D weights (in, out); lm_head tied\n"
    "to wte) and OUTDIR/config.json (model_type gpt2). In Python:\n"
    "  GPT2LMHeadModel.from_pretrained(OUTDIR)\n"
    "The tokenizer files are not written: copy vocab.json and merges.txt into OUTDIR when\n"
    "the model used GPT-2's tokenizer. Such a folder is also what model.init_from,\n"
    "pstrain eval and ckpt loading read (docs/huggingface.md).\n"
    "\n"
    "With --dtype: writes the fp32 model checkpoint CKPT (any model) as a smaller pstrain\n"
    "model file OUT:\n"
    "  fp16  every weight and bias as IEEE half precision (about 1/2 the size)\n"
    "  int8  every weight matrix as int8 with one F32 scale per output unit\n"
    "        (per-channel symmetric: scale = max|w| / 127), biases F32 (about 1/4)\n"
    "pstrain eval/predict and model.init_from read OUT as they read CKPT (dequantised\n"
    "on load); eval --compare CKPT prints the accuracy drop. docs/compression.md.\n";
static const char export_epilog[] =
    "Exit status: 0 written, 2 bad usage or the output exists (see --force), 3 not a\n"
    "GPT-2 (without --dtype), non-finite weights or a bad checkpoint, 4 cannot read or\n"
    "write.\n";
static const char prune_synopsis[] =
    "usage: pstrain prune CKPT OUT --sparsity S\n"
    "\n"
    "Magnitude pruning: in every weight matrix of CKPT the fraction S (0 <= S < 1)\n"
    "of weights of smallest magnitude become exactly 0; biases are kept. OUT is an\n"
    "fp32 model file, to evaluate or to fine-tune from (model.init_from with\n"
    "model.keep_zeros: docs/finetuning.md). docs/compression.md.\n";

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* CKPT as given, or CKPT/model.safetensors when it is a folder. */
static void model_path(char *buf, size_t n, const char *ckpt)
{
    struct stat st;
    if (stat(ckpt, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(buf, n, "%s/model.safetensors", ckpt);
    else
        snprintf(buf, n, "%s", ckpt);
}

/* The Hugging Face export (no --dtype). */
static int export_hf(const char *ckpt, const char *out, int force)
{
    char path[4200];
    struct stat st;
    for (int i = 0; i < 2 && !force; i++) {
        snprintf(path, sizeof path, "%s/%s", out, i ? CKPT_HF_CONFIG : CKPT_HF_WEIGHTS);
        if (lstat(path, &st) == 0) {
            fprintf(stderr, "pstrain export: %s exists; not overwriting it (--force replaces it)\n",
                    path);
            return EXIT_USAGE;
        }
    }
    pst_err err = {0};
    if (ckpt_hf_export(ckpt, out, &err)) {
        fprintf(stderr, "pstrain export: %s\n", err.msg);
        return cli_exit_code(err.code);
    }
    printf("%s/" CKPT_HF_WEIGHTS " %s/" CKPT_HF_CONFIG "\n", out, out);
    return EXIT_OK;
}

/* --dtype fp16|int8 (dtype 0 or 1). */
static int export_dtype(const char *in, const char *out, int dtype, int force)
{
    struct stat st;
    if (!force && lstat(out, &st) == 0) {
        fprintf(stderr, "pstrain export: %s exists; not overwriting it (--force replaces it)\n",
                out);
        return EXIT_USAGE;
    }
    pst_err err = {0};
    ckpt_export_report rep;
    int rc = ckpt_export(in, out, dtype == 0 ? CKPT_EXPORT_FP16 : CKPT_EXPORT_INT8, &rep, &err);
    if (rc) {
        fprintf(stderr, "pstrain export: %s\n", err.msg);
        return rc == PST_ERR_ARG ? EXIT_USAGE : cli_exit_code(rc);
    }
    printf("%s: %s, %d tensors narrowed, %d kept F32; %lld bytes (fp32 %lld, %.2fx); "
           "max |w - w'| %.3g\n",
           out, dtype == 0 ? "fp16" : "int8", rep.narrowed, rep.kept, file_size(out), file_size(in),
           (double)file_size(in) / (double)file_size(out), rep.max_err);
    return EXIT_OK;
}

int cmd_export(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    (void)stop;
    int format = -1, force = 0, dtype = -1;
    const cli_opt opts[] = {{.name = "format",
                             .kind = CLI_CHOICE,
                             .dest = &format,
                             .meta = "hf",
                             .choices = "hf",
                             .help = "the layout written: hf, Hugging Face's (the default\n"
                                     "without --dtype)"},
                            {.name = "dtype",
                             .kind = CLI_CHOICE,
                             .dest = &dtype,
                             .meta = "fp16|int8",
                             .choices = "fp16|int8",
                             .help = "a pstrain model file OUT with weights of this type"},
                            {.name = "force",
                             .kind = CLI_FLAG,
                             .dest = &force,
                             .help = "replace the files written if they exist"},
                            {0}};
    const cli_spec spec = {.cmd = "export",
                           .synopsis = export_synopsis,
                           .opts = opts,
                           .epilog = export_epilog,
                           .max_pos = 2};
    cli_args a;
    int ec = cli_parse(&spec, argc, argv, &a);
    if (ec >= 0)
        return ec;
    if (a.npos != 2)
        fprintf(stderr, "pstrain export: needs CKPT and %s (see pstrain export --help)\n",
                dtype >= 0 ? "OUT" : "OUTDIR");
    else if (format >= 0 && dtype >= 0)
        fprintf(stderr, "pstrain export: --format hf writes float32 Hugging Face weights; "
                        "--dtype writes a pstrain model file: give one of them\n");
    else {
        char ckpt[4096];
        model_path(ckpt, sizeof ckpt, a.pos[0]);
        ec = dtype >= 0 ? export_dtype(ckpt, a.pos[1], dtype, force)
                        : export_hf(ckpt, a.pos[1], force);
        cli_args_fini(&a);
        return ec;
    }
    cli_args_fini(&a);
    return EXIT_USAGE;
}

int cmd_prune(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    (void)stop;
    double sparsity = -1.0;
    const cli_opt opts[] = {{.name = "sparsity",
                             .kind = CLI_NUM,
                             .dest = &sparsity,
                             .meta = "S",
                             .help = "fraction of each weight matrix set to 0, in [0, 1)"},
                            {0}};
    const cli_spec spec = {.cmd = "prune", .synopsis = prune_synopsis, .opts = opts, .max_pos = 2};
    cli_args a;
    int ec = cli_parse(&spec, argc, argv, &a);
    if (ec >= 0)
        return ec;
    ec = EXIT_USAGE;
    if (a.npos != 2)
        fprintf(stderr, "pstrain prune: needs CKPT and OUT (see pstrain prune --help)\n");
    else if (sparsity == -1.0)
        fprintf(stderr, "pstrain prune: needs --sparsity S\n");
    else if (!(sparsity >= 0.0 && sparsity < 1.0))
        fprintf(stderr, "pstrain prune: --sparsity: %g is not in [0, 1)\n", sparsity);
    else {
        char in[4096];
        model_path(in, sizeof in, a.pos[0]);
        const char *out = a.pos[1];
        pst_err err = {0};
        ckpt_prune_report rep;
        int rc = ckpt_prune_file(in, out, sparsity, &rep, &err);
        if (rc) {
            fprintf(stderr, "pstrain prune: %s\n", err.msg);
            ec = rc == PST_ERR_ARG ? EXIT_USAGE : cli_exit_code(rc);
        } else {
            printf("%s: %d weight matrices, %llu of %llu weights zero (%.1f%%); %lld bytes\n", out,
                   rep.tensors, (unsigned long long)rep.pruned, (unsigned long long)rep.total,
                   rep.total ? 100.0 * (double)rep.pruned / (double)rep.total : 0.0,
                   file_size(out));
            ec = EXIT_OK;
        }
    }
    cli_args_fini(&a);
    return ec;
}
