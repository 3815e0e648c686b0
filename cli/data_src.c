/* cli/data_src.c -- the options that say how to read a labelled data file, one table
 * fragment and one filler for every command that takes one (eval, predict, explain). */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

void cli_data_opts_init(cli_data_opts *o, cli_data_src *src, const char *formats,
                        cli_opt opts[CLI_DATA_NOPTS])
{
    *src = (cli_data_src){.label_index = INT_MIN, .delimiter = ','};
    *o = (cli_data_opts){.src = src, .format = -1, .header = 2, .delim = ","};
    opts[0] = (cli_opt){.name = "format",
                        .kind = CLI_CHOICE,
                        .dest = &o->format,
                        .meta = formats,
                        .choices = formats,
                        .help = "format of DATA (default: idx with --labels, else csv)"};
    opts[1] = (cli_opt){.name = "labels",
                        .kind = CLI_STR,
                        .dest = &src->labels,
                        .meta = "FILE",
                        .help = "IDX labels file (DATA is then the images file)"};
    opts[2] = (cli_opt){.name = "label",
                        .kind = CLI_STR,
                        .dest = &src->label,
                        .meta = "NAME",
                        .help = "CSV label column by header name"};
    opts[3] = (cli_opt){.name = "label-index",
                        .kind = CLI_INT,
                        .dest = &src->label_index,
                        .meta = "N",
                        .lo = -1,
                        .hi = INT_MAX,
                        .help = "CSV label column by index (default -1: the last)"};
    opts[4] = (cli_opt){.name = "header",
                        .kind = CLI_CHOICE,
                        .dest = &o->header,
                        .meta = "yes|no|auto",
                        .choices = "yes|no|auto",
                        .help = "CSV header line (default auto)"};
    opts[5] = (cli_opt){.name = "delimiter",
                        .kind = CLI_STR,
                        .dest = &o->delim,
                        .meta = "C",
                        .help = "CSV field separator (default ,)"};
}

int cli_data_opts_finish(cli_data_opts *o, int no_label, const char *cmd)
{
    cli_data_src *src = o->src;
    if (strlen(o->delim) != 1) {
        fprintf(stderr, "pstrain %s: --delimiter: '%s' is not one character\n", cmd, o->delim);
        return EXIT_USAGE;
    }
    /* The choices' indices: formats is "idx|csv|libsvm" or a prefix of it. */
    static const cfg_format formats[] = {CFG_FMT_IDX, CFG_FMT_CSV, CFG_FMT_LIBSVM};
    static const cfg_header headers[] = {CFG_HEADER_YES, CFG_HEADER_NO, CFG_HEADER_AUTO};
    src->delimiter = o->delim[0];
    src->header = headers[o->header];
    src->format = o->format >= 0 ? (int)formats[o->format]
                  : src->labels  ? CFG_FMT_IDX
                                 : CFG_FMT_CSV;
    if (src->format == CFG_FMT_IDX && !src->labels) {
        fprintf(stderr, "pstrain %s: --format idx needs --labels FILE\n", cmd);
        return EXIT_USAGE;
    }
    if (no_label && (src->format != CFG_FMT_CSV || src->label || src->label_index != INT_MIN)) {
        fprintf(stderr,
                "pstrain %s: --no-label is for CSV data, without --label or --label-index\n", cmd);
        return EXIT_USAGE;
    }
    if (no_label)
        src->label_index = DS_CSV_NO_LABEL;
    else if (src->label_index == INT_MIN)
        src->label_index = -1;
    return -1;
}
