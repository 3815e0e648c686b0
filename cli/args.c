/* cli/args.c -- the subcommands' argument parser (args.h). */
#define _GNU_SOURCE /* getopt_long, strndup */
#include "cli/args.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const cli_opt help_opt = {
    .name = "help", .letter = 'h', .kind = CLI_FLAG, .help = "this text"};

/* Every option a command takes, in the order --help lists them: -h/--help, the table,
 * then the job shorthands. */
typedef struct {
    const cli_opt **opt;
    int n;
    int njob; /* the last njob are cli_job_opts */
} opt_list;

/* A command's own option of that name replaces the job shorthand (consolidate's --output
 * FILE is not output.dir): neither parsed nor listed. */
static int shadowed(const cli_spec *sp, const char *name)
{
    for (const cli_opt *o = sp->opts; o && o->name; o++)
        if (strcmp(o->name, name) == 0)
            return 1;
    return 0;
}

static int list_opts(const cli_spec *sp, opt_list *l)
{
    int n = 1;
    for (const cli_opt *o = sp->opts; o && o->name; o++)
        n++;
    int njob = 0;
    for (const cli_opt *o = cli_job_opts; sp->job && o->name; o++)
        njob++;
    if (!(l->opt = malloc((size_t)(n + njob) * sizeof *l->opt)))
        return -1;
    l->n = 0;
    l->opt[l->n++] = &help_opt;
    for (const cli_opt *o = sp->opts; o && o->name; o++)
        l->opt[l->n++] = o;
    l->njob = 0;
    for (int j = 0; j < njob; j++)
        if (!shadowed(sp, cli_job_opts[j].name)) {
            l->opt[l->n++] = &cli_job_opts[j];
            l->njob++;
        }
    return 0;
}

/* The option named by the first len characters of name, exactly; NULL if none. */
static const cli_opt *find_long(const opt_list *l, const char *name, size_t len)
{
    for (int i = 0; i < l->n; i++)
        if (strlen(l->opt[i]->name) == len && strncmp(l->opt[i]->name, name, len) == 0)
            return l->opt[i];
    return NULL;
}

static char *keep(cli_args *a, char *s)
{
    if (s)
        a->owned[a->nowned++] = s;
    return s;
}

/* Checks value by the option's kind, and stores it in dest when dest is given. */
static int take_value(const cli_opt *o, const char *v, pst_err *err)
{
    const int ranged = o->lo != 0 || o->hi != 0;
    char *end;
    switch (o->kind) {
    case CLI_FLAG:
        if (o->dest)
            *(int *)o->dest = 1;
        return PST_OK;
    case CLI_STR:
        if (o->dest)
            *(const char **)o->dest = v;
        return PST_OK;
    case CLI_INT:
    case CLI_I64: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno)
            return pst_err_set(err, PST_ERR_ARG, "--%s: '%s' is not a number", o->name, v);
        double lo = ranged ? o->lo : o->kind == CLI_INT ? INT_MIN : (double)LLONG_MIN;
        double hi = ranged ? o->hi : o->kind == CLI_INT ? INT_MAX : (double)LLONG_MAX;
        if ((double)x < lo || (double)x > hi)
            return pst_err_set(err, PST_ERR_ARG, "--%s: '%s' is out of range (%.0f to %.0f)",
                               o->name, v, lo, hi);
        if (o->dest && o->kind == CLI_INT)
            *(int *)o->dest = (int)x;
        else if (o->dest)
            *(long long *)o->dest = x;
        return PST_OK;
    }
    case CLI_NUM: {
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return pst_err_set(err, PST_ERR_ARG, "--%s: '%s' is not a number", o->name, v);
        if (ranged && (x < o->lo || x > o->hi))
            return pst_err_set(err, PST_ERR_ARG, "--%s: '%s' is out of range (%g to %g)", o->name,
                               v, o->lo, o->hi);
        if (o->dest)
            *(double *)o->dest = x;
        return PST_OK;
    }
    case CLI_CHOICE: {
        size_t vlen = strlen(v);
        int i = 0;
        for (const char *c = o->choices; *c; i++) {
            size_t len = strcspn(c, "|");
            if (len == vlen && strncmp(c, v, len) == 0) {
                if (o->dest)
                    *(int *)o->dest = i;
                return PST_OK;
            }
            c += len + (c[len] == '|');
        }
        char list[256];
        size_t k = 0;
        for (const char *c = o->choices; *c && k + 3 < sizeof list; c++)
            k += (size_t)snprintf(list + k, sizeof list - k, *c == '|' ? ", " : "%c", *c);
        return pst_err_set(err, PST_ERR_ARG, "--%s: '%s' is not one of %s", o->name, v, list);
    }
    }
    return pst_err_set(err, PST_ERR_ARG, "--%s: bad option kind", o->name);
}

static void add_override(cli_args *a, const char *flag, const char *key, const char *value)
{
    a->ov[a->nov++] = (cli_override){flag, key, value};
}

/* "--NAME VALUE" or "--NAME=VALUE" with a dotted NAME at av[*i]: a job key, taken whole
 * here (getopt_long never sees it). */
static int take_dotted(cli_args *a, int ac, char **av, int *i, pst_err *err)
{
    const char *tok = av[*i];
    const char *eq = strchr(tok, '=');
    size_t len = eq ? (size_t)(eq - tok - 2) : strlen(tok + 2);
    char *key = keep(a, strndup(tok + 2, len));
    if (!key)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    const char *value = eq ? eq + 1 : *i + 1 < ac ? av[*i + 1] : NULL;
    if (!value)
        return pst_err_set(err, PST_ERR_ARG, "--%s needs a value", key);
    add_override(a, key, key, value);
    a->raw[a->nraw++] = av[(*i)++];
    if (!eq)
        a->raw[a->nraw++] = av[(*i)++];
    return PST_OK;
}

/* A table option o with its value v, from the token(s) at av[tok] (one when joined with
 * '='). */
static int take_opt(cli_args *a, const cli_opt *o, int is_job, const char *v, char **av, int tok,
                    int joined, pst_err *err)
{
    int rc = take_value(o, v, err);
    if (rc || !o->key)
        return rc;
    add_override(a, o->name, o->key, v);
    if (is_job) { /* a shorthand: passed on as typed */
        a->raw[a->nraw++] = av[tok];
        if (!joined)
            a->raw[a->nraw++] = av[tok + 1];
        return PST_OK;
    }
    /* The command's own name for a job key (pstrain local's --metrics-port): the other
     * processes take the key itself. */
    size_t n = strlen(o->key) + strlen(v) + 4;
    char *s = keep(a, malloc(n));
    if (!s)
        return pst_err_set(err, PST_ERR_NOMEM, "out of memory");
    snprintf(s, n, "--%s=%s", o->key, v);
    a->raw[a->nraw++] = s;
    return PST_OK;
}

/* The getopt_long tables for l: long options valued 256 + index; the short letters. */
static int build_getopt(const opt_list *l, struct option *lo, char *shorts)
{
    char *s = shorts;
    *s++ = '-'; /* non-options returned in order, as code 1 */
    *s++ = ':'; /* a missing value returned as ':' */
    for (int i = 0; i < l->n; i++) {
        const cli_opt *o = l->opt[i];
        int has = o->kind != CLI_FLAG;
        lo[i] = (struct option){o->name, has ? required_argument : no_argument, NULL, 256 + i};
        if (o->letter) {
            *s++ = o->letter;
            if (has)
                *s++ = ':';
        }
    }
    *s = '\0';
    lo[l->n] = (struct option){0};
    return 0;
}

/* The parse loop over av[0..ac), av[0] a program name as getopt expects. */
static int parse_loop(const cli_spec *sp, const opt_list *l, int ac, char **av, cli_args *a,
                      pst_err *err)
{
    struct option *lo = calloc((size_t)l->n + 1, sizeof *lo);
    char *shorts = malloc(2 * (size_t)l->n + 3);
    int rc = PST_OK, help = 0;
    if (!lo || !shorts) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    build_getopt(l, lo, shorts);
    const char *unknown = sp->unknown ? sp->unknown : "unknown option";
    /* glibc starts over (a new argv, new options) on a call with optind 0; a call on an
     * empty argv does that, so that the screening below sees av[1] too. */
    char *none[] = {av[0], NULL};
    optind = 0;
    opterr = 0;
    getopt_long(1, none, shorts, lo, NULL);
    optind = 1;
    while (!rc) {
        const char *t = optind < ac ? av[optind] : NULL;
        int tok = optind, joined = 0;
        if (t && t[0] == '-' && t[1] == '-' && t[2]) {
            /* A long option is taken whole by getopt_long, so this is the start of one:
             * screen it for the rules of args.h. */
            size_t len = strcspn(t + 2, "=");
            const cli_opt *o = find_long(l, t + 2, len);
            joined = t[2 + len] == '=';
            if (!o && sp->job && memchr(t + 2, '.', len)) {
                int i = optind;
                rc = take_dotted(a, ac, av, &i, err);
                optind = i;
                continue;
            }
            if (!o) {
                rc = pst_err_set(err, PST_ERR_ARG, "%s '--%.*s' (see --help)", unknown,
                                 (int)(len > 100 ? 100 : len), t + 2);
                break;
            }
            if (o->kind == CLI_FLAG && joined) {
                rc = pst_err_set(err, PST_ERR_ARG, "--%s takes no value", o->name);
                break;
            }
        }
        int c = getopt_long(ac, av, shorts, lo, NULL);
        if (c == -1)
            break;
        if (c == 1) {
            if (a->npos == sp->max_pos)
                rc = pst_err_set(err, PST_ERR_ARG, "unexpected argument '%s' (see --help)", optarg);
            else
                a->pos[a->npos++] = optarg;
            continue;
        }
        const cli_opt *o = NULL;
        int idx = -1;
        if (c >= 256)
            idx = c - 256;
        else
            for (int i = 0; i < l->n && idx < 0; i++)
                if (l->opt[i]->letter && l->opt[i]->letter == (c == ':' || c == '?' ? optopt : c))
                    idx = i;
        o = idx >= 0 ? l->opt[idx] : NULL;
        if (c == ':' && o) {
            rc = pst_err_set(err, PST_ERR_ARG, "--%s needs a value", o->name);
        } else if (c == ':' || c == '?') {
            if (o && o->kind == CLI_FLAG)
                rc = pst_err_set(err, PST_ERR_ARG, "--%s takes no value", o->name);
            else if (optopt >= 256)
                rc =
                    pst_err_set(err, PST_ERR_ARG, "--%s needs a value", l->opt[optopt - 256]->name);
            else
                rc = pst_err_set(err, PST_ERR_ARG, "%s '-%c' (see --help)", unknown,
                                 optopt > ' ' && optopt < 127 ? optopt : '?');
        } else if (o == &help_opt) {
            help = 1;
            break;
        } else {
            rc = take_opt(a, o, idx >= l->n - l->njob, optarg, av, tok, joined, err);
        }
    }
    /* After "--": the rest is positional. */
    for (int i = optind; !rc && !help && i < ac; i++) {
        if (a->npos == sp->max_pos)
            rc = pst_err_set(err, PST_ERR_ARG, "unexpected argument '%s' (see --help)", av[i]);
        else
            a->pos[a->npos++] = av[i];
    }
cleanup:
    free(lo);
    free(shorts);
    return help ? CLI_ARGS_HELP : rc;
}

/* -h/--help anywhere wins over every other argument (an error included). */
static int wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            return 0;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    }
    return 0;
}

int cli_args_parse(const cli_spec *sp, int argc, char **argv, cli_args *a, pst_err *err)
{
    memset(a, 0, sizeof *a);
    size_t n = (size_t)argc + 1;
    a->pos = calloc(n, sizeof *a->pos);
    a->ov = calloc(n, sizeof *a->ov);
    a->raw = calloc(n, sizeof *a->raw);
    a->owned = calloc(n, sizeof *a->owned);
    char **av = calloc(n + 1, sizeof *av);
    opt_list l = {0};
    int rc;
    if (!a->pos || !a->ov || !a->raw || !a->owned || !av || list_opts(sp, &l)) {
        rc = pst_err_set(err, PST_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (wants_help(argc, argv)) {
        rc = CLI_ARGS_HELP;
        goto cleanup;
    }
    av[0] = (char *)sp->cmd;
    memcpy(av + 1, argv, (size_t)argc * sizeof *av);
    rc = parse_loop(sp, &l, argc + 1, av, a, err);
cleanup:
    free(l.opt);
    free(av);
    return rc;
}

void cli_args_fini(cli_args *a)
{
    for (int i = 0; i < a->nowned; i++)
        free(a->owned[i]);
    free(a->owned);
    free(a->pos);
    free(a->ov);
    free(a->raw);
    memset(a, 0, sizeof *a);
}

int cli_parse(const cli_spec *sp, int argc, char **argv, cli_args *a)
{
    pst_err err = {0};
    int rc = cli_args_parse(sp, argc, argv, a, &err);
    if (rc == PST_OK)
        return -1;
    if (rc == CLI_ARGS_HELP)
        cli_args_usage(sp, stdout);
    else
        fprintf(stderr, "pstrain %s: %s\n", sp->cmd, err.msg);
    cli_args_fini(a);
    return rc == CLI_ARGS_HELP ? EXIT_OK : cli_exit_code(rc);
}

/* "  -h, --help" / "  --rank R" and the help lines, the first at column 24 (or on a line
 * of its own when the option is wider). */
static void usage_line(const cli_opt *o, FILE *f)
{
    char head[96];
    int n = snprintf(head, sizeof head, "  %s%c%s--%s%s%s", o->letter ? "-" : "",
                     o->letter ? o->letter : ' ', o->letter ? ", " : "", o->name,
                     o->meta ? " " : "", o->meta ? o->meta : "");
    if (!o->letter) /* no "-x, ": the long name starts at column 2 */
        n = snprintf(head, sizeof head, "  --%s%s%s", o->name, o->meta ? " " : "",
                     o->meta ? o->meta : "");
    fputs(head, f);
    const char *h = o->help ? o->help : "";
    if (n > 22)
        fprintf(f, "\n%24s", "");
    else
        fprintf(f, "%*s", 24 - n, "");
    for (const char *p = h;;) {
        size_t len = strcspn(p, "\n");
        fprintf(f, "%.*s\n", (int)len, p);
        if (!p[len])
            break;
        p += len + 1;
        fprintf(f, "%24s", "");
    }
}

void cli_args_usage(const cli_spec *sp, FILE *f)
{
    if (sp->synopsis)
        fputs(sp->synopsis, f);
    fputs("\noptions:\n", f);
    usage_line(&help_opt, f);
    for (const cli_opt *o = sp->opts; o && o->name; o++)
        if (o->help)
            usage_line(o, f);
    if (sp->job) {
        fputs("\njob options: any key of the job file as --SECTION.KEY VALUE or "
              "--SECTION.KEY=VALUE,\n"
              "e.g. --optimizer.lr 0.01, --model.layers.0.units=512, --data.validation_split "
              "0.2;\nand these shorthands:\n",
              f);
        for (const cli_opt *o = cli_job_opts; o->name; o++)
            if (!shadowed(sp, o->name))
                usage_line(o, f);
    }
    if (sp->epilog) {
        fputs("\n", f);
        fputs(sp->epilog, f);
    }
}
