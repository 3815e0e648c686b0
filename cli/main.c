/* cli/main.c -- the pstrain command: dispatches to the subcommands. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/layer.h"

/* The one piece of process-wide mutable state: set by the signal handler, read by the
 * training loop between steps. */
static volatile sig_atomic_t stop_signal;

/* A first SIGINT or SIGTERM asks for a stop (a distributed job's ends at one clock and
 * writes its checkpoints, which may take a few seconds); the same signal again stops at
 * once. A different one does not: after Ctrl-C at a terminal every process of `pstrain
 * local` gets both the terminal's SIGINT and the launcher's SIGTERM. */
static void on_signal(int sig)
{
    if (stop_signal == sig)
        _exit(128 + sig);
    stop_signal = sig;
}

static void usage(FILE *f)
{
    fputs("usage: pstrain <command> [options]\n"
          "\n"
          "Distributed parameter-server training of dense neural networks.\n"
          "\n"
          "commands:\n"
          "  train [JOB.yaml]   train in this process (no file: the Fashion-MNIST default job)\n"
          "  local [JOB.yaml]   run the job here as coordinator, server and worker processes\n"
          "                     (no file: the default job, 2 servers and 2 workers)\n"
          "  coordinator, server, worker\n"
          "                     one process of a distributed job (see their --help)\n"
          "  mpi [JOB.yaml]     the job's processes as the ranks of an mpirun launch\n"
          "  eval CKPT DATA     loss, accuracy, precision/recall/F1, confusion matrix of a\n"
          "                     checkpoint on a data file\n"
          "  predict CKPT DATA  a checkpoint's predictions for a data file, as CSV\n"
          "                     (a language model: eval CKPT TEXT gives loss and perplexity)\n"
          "  generate CKPT --prompt TEXT\n"
          "                     text sampled from a language model\n"
          "  export CKPT OUTDIR a GPT-2 checkpoint as a Hugging Face folder (model.safetensors,\n"
          "                     config.json)\n"
          "  export CKPT OUT --dtype fp16|int8\n"
          "                     a smaller copy of a model checkpoint (dequantised on load)\n"
          "  prune CKPT OUT --sparsity S\n"
          "                     magnitude pruning: the smallest weights set to zero\n"
          "  consolidate [JOB.yaml] --resume DIR\n"
          "                     one model file from a distributed run's shard checkpoints\n"
          "  explain CKPT DATA  interpretability PNGs: first-layer weights, saliency maps,\n"
          "                     permutation feature importance, confusion matrix (gnuplot)\n"
          "  plot RUN_DIR       PNG plots of a run's metrics.csv with gnuplot (--ascii: text)\n"
          "  status [RUN_DIR]   the processes of a running job: state, last heartbeat, progress\n"
          "  keygen --out DIR NAME...\n"
          "                     CURVE key pairs for encrypted, authenticated jobs\n"
          "\n"
          "  pstrain <command> --help   options of a command\n"
          "  pstrain --version          version\n"
          "\n"
          "layer types (model.layers.N.type, keys beside name, inputs, trainable, lr_mult;\n"
          "docs/job-file.md):\n",
          f);
    ml_registry_print_help(ml_registry_builtin(), f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("pstrain %s\n", PSTRAIN_VERSION);
        return EXIT_OK;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Allocator settings of the distributed processes, set before any ZeroMQ context
     * exists. ZeroMQ allocates every received 16 MiB frame; with glibc's defaults a few
     * frames in flight at once grow the heap past its dynamic trim threshold, the heap
     * is trimmed after them, and the next step's frames land on fresh pages, which fill
     * at a fifth of memcpy speed here (DESIGN-NOTES; it showed as page faults in the
     * receivers' I/O threads, as much CPU as the worker's copy of the weights). One arena,
     * no mmap'd chunks and a 1 GiB trim threshold keep freed frames for reuse. Peak RSS is
     * unchanged (it counts the frames in flight either way); up to 1 GiB of freed frames
     * stays mapped while the process runs. */
    if (strcmp(cmd, "server") == 0 || strcmp(cmd, "worker") == 0 ||
        strcmp(cmd, "coordinator") == 0 || strcmp(cmd, "mpi") == 0) {
        mallopt(M_ARENA_MAX, 1);
        mallopt(M_MMAP_MAX, 0);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }

    if (strcmp(cmd, "train") == 0)
        return cmd_train(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "local") == 0)
        return cmd_local(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "server") == 0)
        return cmd_server(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "worker") == 0)
        return cmd_worker(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "coordinator") == 0)
        return cmd_coordinator(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "generate") == 0)
        return cmd_generate(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "predict") == 0)
        return cmd_predict(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "consolidate") == 0)
        return cmd_consolidate(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "mpi") == 0)
        return cmd_mpi(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "explain") == 0)
        return cmd_explain(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "plot") == 0)
        return cmd_plot(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "export") == 0)
        return cmd_export(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "prune") == 0)
        return cmd_prune(argc - 2, argv + 2, &stop_signal);
    if (strcmp(cmd, "keygen") == 0)
        return cmd_keygen(argc - 2, argv + 2, &stop_signal);
    fprintf(stderr, "pstrain: unknown command '%s' (see pstrain --help)\n", cmd);
    return EXIT_USAGE;
}
