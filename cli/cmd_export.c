/* cli/cmd_export.c -- `pstrain export` (fp16/int8 copies of a model checkpoint) and
 * `pstrain prune` (magnitude pruning); the file work is ckpt/quant.h's. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt/quant.h"
#include "cli/cli.h"

static const char export_synopsis[] =
    "usage: pstrain export CKPT OUT --dtype fp16|int8\n"
    "\n"
    "Writes the fp32 model checkpoint CKPT as a smaller model file OUT:\n"
    "  fp16  every weight and bias as IEEE half precision (about 1/2 the size)\n"
    "  int8  every weight matrix as int8 with one F32 scale per output unit\n"
    "        (per-channel symmetric: scale = max|w| / 127), biases F32 (about 1/4)\n"
    "pstrain eval/predict read OUT as they read CKPT (dequantised on load);\n"
    "eval --compare CKPT prints the accuracy drop. docs/compression.md.\n";
static const char prune_synopsis[] =
    "usage: pstrain prune CKPT OUT --sparsity S\n"
    "\n"
    "Magnitude pruning: in every weight matrix of CKPT the fraction S (0 <= S < 1)\n"
    "of weights of smallest magnitude become exactly 0; biases are kept. OUT is an\n"
    "fp32 model file, to evaluate or to fine-tune from (model.init_from).\n"
    "docs/compression.md.\n";

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static int run(const char *cmd, int argc, char **argv)
{
    const int prune = strcmp(cmd, "prune") == 0;
    int dtype = -1;
    double sparsity = -1.0;
    cli_opt opts[] = {{.name = "dtype",
                       .kind = CLI_CHOICE,
                       .dest = &dtype,
                       .meta = "fp16|int8",
                       .choices = "fp16|int8",
                       .help = "the element type of the weights in OUT"},
                      {0},
                      {0}};
    if (prune)
        opts[0] = (cli_opt){.name = "sparsity",
                            .kind = CLI_NUM,
                            .dest = &sparsity,
                            .meta = "S",
                            .help = "fraction of each weight matrix set to 0, in [0, 1)"};
    const cli_spec spec = {.cmd = cmd,
                           .synopsis = prune ? prune_synopsis : export_synopsis,
                           .opts = opts,
                           .max_pos = 2};
    cli_args args;
    int ec = cli_parse(&spec, argc, argv, &args);
    if (ec >= 0)
        return ec;
    const char *in = args.npos > 0 ? args.pos[0] : NULL;
    const char *out = args.npos > 1 ? args.pos[1] : NULL;
    int npos = args.npos;
    cli_args_fini(&args); /* the positionals point into argv */
    if (npos != 2) {
        fprintf(stderr, "pstrain %s: needs a checkpoint and an output file (see --help)\n", cmd);
        return EXIT_USAGE;
    }
    if (!prune && dtype < 0) {
        fprintf(stderr, "pstrain %s: needs --dtype fp16|int8\n", cmd);
        return EXIT_USAGE;
    }
    if (prune && !(sparsity >= 0.0 && sparsity < 1.0)) {
        if (sparsity == -1.0)
            fprintf(stderr, "pstrain %s: needs --sparsity S\n", cmd);
        else
            fprintf(stderr, "pstrain %s: --sparsity: %g is not in [0, 1)\n", cmd, sparsity);
        return EXIT_USAGE;
    }
    pst_err err = {0};
    int rc;
    if (prune) {
        ckpt_prune_report rep;
        if ((rc = ckpt_prune_file(in, out, sparsity, &rep, &err)) == PST_OK)
            printf("%s: %d weight matrices, %llu of %llu weights zero (%.1f%%); %lld bytes\n", out,
                   rep.tensors, (unsigned long long)rep.pruned, (unsigned long long)rep.total,
                   rep.total ? 100.0 * (double)rep.pruned / (double)rep.total : 0.0,
                   file_size(out));
    } else {
        ckpt_export_report rep;
        if ((rc = ckpt_export(in, out, dtype == 0 ? CKPT_EXPORT_FP16 : CKPT_EXPORT_INT8, &rep,
                              &err)) == PST_OK)
            printf("%s: %s, %d tensors narrowed, %d kept F32; %lld bytes (fp32 %lld, %.2fx); "
                   "max |w - w'| %.3g\n",
                   out, dtype == 0 ? "fp16" : "int8", rep.narrowed, rep.kept, file_size(out),
                   file_size(in), (double)file_size(in) / (double)file_size(out), rep.max_err);
    }
    if (rc) {
        fprintf(stderr, "pstrain %s: %s\n", cmd, err.msg);
        return rc == PST_ERR_ARG ? EXIT_USAGE : cli_exit_code(rc);
    }
    return EXIT_OK;
}

int cmd_export(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    (void)stop;
    return run("export", argc, argv);
}

int cmd_prune(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    (void)stop;
    return run("prune", argc, argv);
}
