/* cli/cli.h -- shared pieces of the pstrain subcommands. Only main() and the cmd_*
 * functions print to the user and choose exit codes. */
#ifndef PSTRAIN_CLI_H
#define PSTRAIN_CLI_H

#include <signal.h>
#include <stdint.h>

#include "ckpt/ckpt.h"
#include "cli/args.h"
#include "base/log.h"
#include "job/job.h"
#include "base/err.h"
#include "base/testhooks.h"

/* Exit codes (documented in README.md): scripts and launchers retry only the retriable. */
enum {
    EXIT_OK = 0,
    EXIT_FAILURE_RUNTIME = 1, /* the run failed (diverged, internal error) */
    EXIT_USAGE = 2,           /* bad flag, bad job file: permanent */
    EXIT_DATA = 3,            /* bad input data: permanent */
    EXIT_IO = 4,              /* cannot read or write a file */
    EXIT_DIVERGED = 5,        /* stopped early: diverged or at chance (train.on_divergence) */
    EXIT_RETRIABLE = 75,      /* lost peer, timeout, network failure: retry (EX_TEMPFAIL) */
    EXIT_SIGINT = 130,        /* stopped by Ctrl-C (128 + SIGINT) */
    EXIT_SIGTERM = 143        /* stopped by SIGTERM (128 + SIGTERM) */
};

/* Maps a pst_status to the exit code above. */
int cli_exit_code(int status);
/* 130 or 143 for the signal that stopped the process. */
int cli_stop_exit_code(int sig);
/* Sets the BLAS threads of this process. */
void openblas_threads(int n);

/* Loads the job: the file, or the built-in default when path is NULL, then applies the
 * overrides ov[0..nov) in order (cli/args.h; key "freeze" is --freeze's list) and checks
 * it. A bad override's error names its flag ("--epochs: ..."). */
int cli_load_job(cfg_job **job, const char *path, const cli_override *ov, int nov, pst_err *err);

/* A fresh run (no checkpoint.resume) claims its checkpoint folder (cfg_checkpoint_dir):
 * the checkpoints there that this run's own writers would not set aside -- another kind
 * of run's, or shards of server ranks >= servers -- are moved to its previous-run/
 * (ckpt_set_aside), with a warning on lg. servers: 0 for `pstrain train`, S for a
 * distributed run. Call with the folder locked or before any process of the run starts. */
int cli_run_claim(const cfg_job *job, int servers, const log_ctx *lg, pst_err *err);

/* Makes every path of the job absolute (relative ones are relative to the working
 * directory once loaded), so that the job, printed, loads the same from any folder. */
int cli_job_absolute(cfg_job *job, pst_err *err);

/* With security on (any security.* key set), checks that the keys role needs are set and
 * that every key file given loads (PST_ERR_CONFIG naming the file otherwise). role:
 * "coordinator", "server", "worker", or NULL for a launcher of every role. */
int cli_check_security(const cfg_job *job, const char *role, pst_err *err);

/* The model's outputs y (n, out) for raw feature rows x (n, D): the checkpoint's scaler
 * applied, then the forward pass in batches of at most the max_batch ck was loaded with --
 * what `pstrain predict` computes for each row (cli/predict.c). */
int cli_predict_rows(ckpt_model *ck, const float *x, int64_t n, int max_batch, float *y,
                     pst_err *err);

/* A labelled data file as `pstrain eval` reads it (its --format, --labels, --label,
 * --label-index, --header, --delimiter). format: a cfg_format. */
typedef struct {
    const char *data, *labels, *label;
    int label_index; /* -1: the last column */
    cfg_header header;
    char delimiter;
    int format;
} cli_data_src;
/* Those six options as one table fragment, in that order, for every command that reads
 * such a file (cli/data_src.c):
 *     cli_data_src src;
 *     cli_data_opts dopt;
 *     cli_opt opts[...];
 *     cli_data_opts_init(&dopt, &src, "idx|csv|libsvm", opts + i);  (opts[i..i+6))
 *     ... cli_parse(...) ...
 *     if ((ec = cli_data_opts_finish(&dopt, no_label, "eval")) >= 0)
 *         return ec;
 * formats: the --format choices, "idx|csv|libsvm" or a prefix of it. */
enum { CLI_DATA_NOPTS = 6 };
typedef struct {
    cli_data_src *src;
    int format, header; /* indices into the choices; format -1: not given */
    const char *delim;
} cli_data_opts;
/* Sets *src to the defaults and writes the options into opts[0..CLI_DATA_NOPTS). */
void cli_data_opts_init(cli_data_opts *o, cli_data_src *src, const char *formats,
                        cli_opt opts[CLI_DATA_NOPTS]);
/* After the parse: fills *o->src from the values (format: idx with --labels, else csv;
 * label_index DS_CSV_NO_LABEL when no_label, a CSV without a label column). Returns -1
 * to go on, or EXIT_USAGE after printing "pstrain CMD: ..." for a bad value. */
int cli_data_opts_finish(cli_data_opts *o, int no_label, const char *cmd);
/* Loads it as checkpoint ck's task, classes numbered as ck's, checked against ck's input
 * width (PST_ERR_DATA otherwise); the scaler is not applied yet (cli/cmd_eval.c). */
ds_dataset *cli_eval_data(const cli_data_src *src, const ckpt_model *ck, pst_err *err);
/* What cli_eval_data checks and renumbers once ds (read from path) is loaded: ck's input
 * width and outputs, and named classes given ck's ids by name (no_label: the width alone). */
int cli_eval_fit(ds_dataset *ds, const char *path, int no_label, const ckpt_model *ck,
                 pst_err *err);

/* How eval and predict run a model on rows [lo, lo + n) of their dataset (n at most the
 * batch it was set up for): the outputs (n, K) of net, to which ml_model_loss of net then
 * applies; valid until the next call; NULL on failure. A checkpoint's own forward pass, or a
 * sparse model's (cli_sparse_forward). */
typedef struct {
    ml_model *net;
    const float *(*forward)(void *ctx, const ds_dataset *ds, int64_t lo, int n, pst_err *err);
    void *ctx;
} cli_forward;

/* ---- Models with embedding tables in eval/predict (cli/eval_sparse.c) ---------------------
 * Their model.safetensors holds the dense weights alone: the rows are tables.safetensors
 * beside it, and how a data file's features become ids is the run's job (job.yaml beside
 * the model, or two folders up in a checkpoint folder), so DATA is read with the job's data
 * section as training read its test file. src->format (-1: not given) must be the job's;
 * src's --label NAME, --label-index N (not -1) and --no-label (DS_CSV_NO_LABEL) choose
 * another label column of a CSV; the job's header and delimiter hold. On success *out holds
 * the model with ck's dense weights and the tables (for batches of at most batch rows) and
 * *ds the data, checked (cli_eval_fit) and scaled; both are the caller's. A missing job or
 * tables file is PST_ERR_IO naming the path. */
typedef struct cli_sparse cli_sparse;
int cli_sparse_open(cli_sparse **out, const char *model_path, const ckpt_model *ck,
                    const cli_data_src *src, int batch, ds_dataset **ds, pst_err *err);
ml_model *cli_sparse_model(cli_sparse *s);
/* A cli_forward's: ctx is the cli_sparse. */
const float *cli_sparse_forward(void *ctx, const ds_dataset *ds, int64_t lo, int n, pst_err *err);
void cli_sparse_close(cli_sparse *s); /* NULL: nothing */
/* The tables file of the model file model_path, the one convention of eval, predict,
 * consolidate and local: DIR/tables.safetensors beside DIR/model.safetensors (pstrain
 * train, every checkpoint folder, the end of a distributed run); for any other name
 * DIR/NAME.safetensors (or DIR/NAME), DIR/NAME.tables.safetensors (pstrain consolidate's
 * model-clock-C.safetensors: model-clock-C.tables.safetensors). */
void cli_tables_path(const char *model_path, char *buf, size_t cap);
/* The servers' tables files of `clock` in dir (tables-server-<rank>-clock-<clock>.safetensors,
 * ps/srv_ckpt.h) merged into out (ckpt_sparse_merge, atomically). A missing one is
 * PST_ERR_IO naming it; nothing is written on any failure. (cli/cmd_consolidate.c) */
int cli_merge_tables(const char *dir, int servers, int64_t clock, const char *out, pst_err *err);

/* The test hooks of this process (base/testhooks.h) from its PSTRAIN_TEST_* variables,
 * filled into *h, for the worker of this rank (-1: not a worker; the per-worker hooks stay
 * off). NULL when no PSTRAIN_TEST_* variable is set: production runs carry no hooks. */
const pst_test_hooks *cli_test_hooks(pst_test_hooks *h, int rank);

/* ---- Language models (cli/lm.c): `pstrain eval` on text, `pstrain generate` ---------------
 * A checkpoint whose loss is sequence_crossentropy, given as a job file (its output.dir's
 * model), a run folder, a checkpoint folder of a run, or a model file; its tokenizer is
 * the run's job's data.tokenizer (job.yaml beside the model, or two folders up from a
 * checkpoint folder) unless one is given, bytes when neither names one. */
/* The model and job paths (job "" when none is found) for what: a job file (model "": its
 * output.dir's model), a run folder (model.safetensors, job.yaml), a checkpoint folder
 * inside one (<run>/checkpoints/ckpt-N: the run's job.yaml two levels up), or a model file
 * (its folder's job.yaml; in a checkpoint folder ckpt-N, the run's two levels up; in a
 * folder named checkpoints, consolidate's model-clock-C, the run's one level up). cap:
 * the size of both buffers. PST_ERR_IO when what does not exist. */
int cli_model_paths(const char *what, char *model, char *job, size_t cap, pst_err *err);
typedef struct {
    ckpt_model *ck;
    char *tokenizer; /* folder of the tokenizer files; NULL: bytes */
    int context;     /* T: ids per forward pass */
    int vocab;       /* V: logits per position */
    char model_path[4200];
} cli_lm;
typedef struct {
    int64_t windows, tokens;
    double loss;       /* mean token loss */
    double perplexity; /* exp(loss) */
} cli_lm_figures;
int cli_lm_open(cli_lm *lm, const char *what, const char *tokenizer, int max_batch, pst_err *err);
/* The same with what's checkpoint already loaded as ck (cli_lm_is_model; NULL: loaded
 * here), which lm owns from the call on, also when it fails. */
int cli_lm_open_loaded(cli_lm *lm, const char *what, ckpt_model *ck, const char *tokenizer,
                       int max_batch, pst_err *err);
void cli_lm_close(cli_lm *lm);
/* 1 when what names a language model (or a job file): eval takes the text path. *ck: the
 * checkpoint what names, loaded for batches of one, for the caller (ckpt_model_destroy),
 * so that eval reads it once, whichever path it takes; NULL for a job file or a file that
 * does not load. */
int cli_lm_is_model(const char *what, ckpt_model **ck);
/* Loss and perplexity over the windows of T + 1 ids of the text file (data/textwin.h). */
int cli_lm_eval(cli_lm *lm, const char *text, int batch, const volatile sig_atomic_t *stop,
                cli_lm_figures *out, pst_err *err);
int cmd_generate(int argc, char **argv, const volatile sig_atomic_t *stop);

int cmd_train(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_local(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_server(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_worker(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_coordinator(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_eval(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_predict(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_consolidate(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_mpi(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_plot(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_explain(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_status(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_keygen(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_export(int argc, char **argv, const volatile sig_atomic_t *stop);
int cmd_prune(int argc, char **argv, const volatile sig_atomic_t *stop);

#endif
