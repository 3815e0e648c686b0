/* cli/cmd_export.c -- pstrain export: a pstrain GPT-2 checkpoint as a Hugging Face folder
 * (ckpt/hf.h): OUTDIR/model.safetensors under GPT-2's names and OUTDIR/config.json, what
 * GPT2LMHeadModel.from_pretrained(OUTDIR) reads. The checkpoint is read whole and checked
 * before anything is written; existing files in OUTDIR are kept unless --force. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt/hf.h"
#include "cli/cli.h"

static const char export_synopsis[] =
    "usage: pstrain export [--format hf] [--force] CKPT OUTDIR\n"
    "\n"
    "Writes the GPT-2 of checkpoint CKPT (a model.safetensors written by pstrain, or a\n"
    "folder holding one: a run folder, a ckpt-N folder) as a Hugging Face GPT-2 folder:\n"
    "OUTDIR/model.safetensors (wte, wpe, h.N.ln_1, h.N.attn.c_attn, h.N.attn.c_proj,\n"
    "h.N.ln_2, h.N.mlp.c_fc, h.N.mlp.c_proj, ln_f; Conv1D weights (in, out); lm_head tied\n"
    "to wte) and OUTDIR/config.json (model_type gpt2). In Python:\n"
    "  GPT2LMHeadModel.from_pretrained(OUTDIR)\n"
    "The tokenizer files are not written: copy vocab.json and merges.txt into OUTDIR when\n"
    "the model used GPT-2's tokenizer. Such a folder is also what model.init_from,\n"
    "pstrain eval and ckpt loading read (docs/huggingface.md).\n";
static const char export_epilog[] =
    "Exit status: 0 written, 2 bad usage or OUTDIR holds the files (see --force), 3 not a\n"
    "GPT-2 or a bad checkpoint, 4 cannot read or write.\n";

int cmd_export(int argc, char **argv, const volatile sig_atomic_t *stop)
{
    (void)stop;
    int format = 0, force = 0;
    const cli_opt opts[] = {{.name = "format",
                             .kind = CLI_CHOICE,
                             .dest = &format,
                             .meta = "hf",
                             .choices = "hf",
                             .help = "the layout written: hf, Hugging Face's (the default)"},
                            {.name = "force",
                             .kind = CLI_FLAG,
                             .dest = &force,
                             .help = "replace OUTDIR's model.safetensors and config.json"},
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
    if (a.npos != 2) {
        fprintf(stderr, "pstrain export: needs CKPT and OUTDIR (see pstrain export --help)\n");
        cli_args_fini(&a);
        return EXIT_USAGE;
    }
    char ckpt[4096], path[4200];
    const char *out = a.pos[1];
    struct stat st;
    snprintf(ckpt, sizeof ckpt, "%s", a.pos[0]);
    if (stat(ckpt, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", a.pos[0]);
    ec = EXIT_OK;
    for (int i = 0; i < 2 && !force; i++) {
        snprintf(path, sizeof path, "%s/%s", out, i ? CKPT_HF_CONFIG : CKPT_HF_WEIGHTS);
        if (lstat(path, &st) == 0) {
            fprintf(stderr, "pstrain export: %s exists; not overwriting it (--force replaces it)\n",
                    path);
            ec = EXIT_USAGE;
            break;
        }
    }
    pst_err err = {0};
    if (ec == EXIT_OK && ckpt_hf_export(ckpt, out, &err)) {
        fprintf(stderr, "pstrain export: %s\n", err.msg);
        ec = cli_exit_code(err.code);
    }
    if (ec == EXIT_OK)
        printf("%s/" CKPT_HF_WEIGHTS " %s/" CKPT_HF_CONFIG "\n", out, out);
    cli_args_fini(&a);
    return ec;
}
