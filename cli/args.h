/* cli/args.h -- the one argument parser of every pstrain subcommand, on getopt_long.
 *
 * A subcommand describes its options in a table (cli_opt: long name, short letter, kind of
 * value, where it goes, help text) and itself in a cli_spec; from these come both the
 * getopt_long option array and the `--help` text, so every command has --help and the
 * same errors, each one line naming the command, exit code 2:
 *
 *   pstrain train: unknown option '--epoch' (see --help)
 *   pstrain train: --epochs needs a value
 *   pstrain train: --epochs: 'x' is not a number
 *   pstrain server: --port: '70000' is out of range (0 to 65535)
 *   pstrain eval: --format: 'parquet' is not one of idx, csv, libsvm
 *   pstrain plot: unexpected argument 'b' (see --help)
 *
 *   A command's table, built where it runs (it points at the command's variables):
 *     const char *out = NULL;
 *     int ascii = 0;
 *     const cli_opt opts[] = {
 *         {.name = "out", .kind = CLI_STR, .dest = &out, .meta = "DIR", .help = "..."},
 *         {.name = "ascii", .kind = CLI_FLAG, .dest = &ascii, .help = "..."},
 *         {0}};
 *     const cli_spec spec = {.cmd = "plot", .synopsis = "usage: pstrain plot RUN_DIR ...\n",
 *                            .opts = opts, .max_pos = 1};
 *     cli_args a;
 *     int ec = cli_parse(&spec, argc, argv, &a);
 *     if (ec >= 0)
 *         return ec;            (help printed: 0; error printed: 2)
 *     ... a.pos[0] ...
 *     cli_args_fini(&a);
 *
 * Rules (the same for every command):
 * - Options and positional arguments may come in any order; "--" ends the options.
 *   Values are "--name VALUE" or "--name=VALUE" (a value may start with '-': "--lr -1"
 *   is the value -1). A long name must be written out whole: getopt_long's unique-prefix
 *   abbreviations are refused, so that adding an option never changes what an existing
 *   command line means.
 * - -h and --help are in every table: they print the help to stdout and the command exits 0
 *   (even when other arguments are wrong).
 * - Job overrides (spec.job set: the commands that load a job): the shorthands of
 *   cli_job_opts (--epochs N = train.epochs, ...) and any long option whose name holds a dot,
 *   which is taken as a job key: "--optimizer.lr 0.01", "--model.layers.1.units=64". A
 *   dotted name is never looked up in the tables; it always takes a value (the next
 *   argument unless written with '='). Both become cli_override entries, in command-line
 *   order, applied by cli_load_job through cfg_override (job/job.h), which checks the
 *   key and the value. The shorthands' values are checked here by their kind first.
 *   An unknown long option without a dot is an error, as in any command. */
#ifndef PSTRAIN_CLI_ARGS_H
#define PSTRAIN_CLI_ARGS_H

#include <stdio.h>

#include "base/err.h"

typedef enum {
    CLI_FLAG,  /* no value: *(int *)dest = 1 */
    CLI_STR,   /* *(const char **)dest = the value (points into argv) */
    CLI_INT,   /* *(int *)dest: a whole decimal number, in [lo, hi] */
    CLI_I64,   /* *(long long *)dest: likewise */
    CLI_NUM,   /* *(double *)dest: a finite number, in [lo, hi] */
    CLI_CHOICE /* *(int *)dest = the value's index in choices ("idx|csv|libsvm") */
} cli_kind;

typedef struct {
    const char *name; /* long name, without "--"; NULL ends a table */
    char letter;      /* short option (-x), 0: none */
    cli_kind kind;
    void *dest;          /* where the value goes (see cli_kind); NULL when key is set */
    const char *meta;    /* the value's name in --help ("N", "DIR"); NULL for CLI_FLAG */
    const char *help;    /* its help: lines separated by '\n', no trailing newline; NULL:
                            accepted but not listed (an option some launchers pass to
                            every role, meaningless for this one) */
    double lo, hi;       /* range of CLI_INT/CLI_I64/CLI_NUM; lo == hi == 0: any */
    const char *choices; /* CLI_CHOICE: the values, '|' between them */
    const char *key;     /* a job override: the value (checked by kind) goes to this job key,
                            as cli_override; dest is then unused */
} cli_opt;

typedef struct {
    const char *cmd;      /* "train", "server": errors read "pstrain CMD: ..." */
    const char *synopsis; /* the help above the options list ("usage: ...\n\n...\n") */
    const cli_opt *opts;  /* this command's options, ending with {0}; -h/--help is added */
    const char *epilog;   /* the help after the options list; NULL: none */
    int job;              /* takes job overrides: cli_job_opts and --SECTION.KEY VALUE */
    int max_pos;          /* how many positional arguments it takes */
    const char *unknown;  /* the words of the unknown-option error; NULL: "unknown option" */
} cli_spec;

/* A job override from the command line: flag is the option as typed, without "--" and
 * any "=VALUE" ("epochs", "optimizer.lr"), for error messages; key the job key. */
typedef struct {
    const char *flag, *key, *value;
} cli_override;

/* What cli_args_parse found; everything points into argv or into storage freed by
 * cli_args_fini. */
typedef struct {
    char **pos; /* (npos) positional arguments, in order */
    int npos;
    cli_override *ov; /* (nov) job overrides, in order */
    int nov;
    char **raw; /* (nraw) the job overrides as typed, for the command lines of
                             other processes of the job (pstrain local); an option of the
                             command's own table that sets a job key is given as --KEY */
    int nraw;
    char **owned; /* (nowned) strings allocated here */
    int nowned;
} cli_args;

/* The shorthand job options (--epochs, --lr, --servers, ...; cli/job.c), taken by every
 * command whose spec has .job set. */
extern const cli_opt cli_job_opts[];

enum { CLI_ARGS_HELP = -1 };

/* Parses argv[0..argc) (the arguments after the subcommand's name) by the spec. Returns
 * PST_OK; CLI_ARGS_HELP when -h/--help was given (nothing else is looked at); or
 * PST_ERR_ARG (PST_ERR_NOMEM) with err set, e.g. "--epochs: 'x' is not a number". *a is
 * valid (cli_args_fini it) whatever the result. */
int cli_args_parse(const cli_spec *spec, int argc, char **argv, cli_args *a, pst_err *err);
void cli_args_fini(cli_args *a);

/* cli_args_parse, printing for the command: returns -1 to go on, or the exit code after
 * the help was printed to stdout (0) or the error to stderr (2). */
int cli_parse(const cli_spec *spec, int argc, char **argv, cli_args *a);

/* The --help text: synopsis, the options of the table (and the job options), epilog. */
void cli_args_usage(const cli_spec *spec, FILE *f);

#endif
