/*
 * main.c — the `par` command line: dispatches to the subcommands in src/cli/.
 */
#include <stdio.h>
#include <string.h>

#include <par/par.h>

#include "cli/cli.h"
#include "util/suggest.h"

static void usage_main(FILE *f)
{
    fprintf(f,
            "par %s — the Pixell Agent Runtime\n\n"
            "usage: par <command> [options]\n\n"
            "commands:\n"
            "  serve     serve agent packages over HTTP\n"
            "  config    check a configuration, show the effective one, print its reference\n"
            "  pack      build a deterministic .apkg from a package directory\n"
            "  inspect   show a package's manifest, exports and digest\n"
            "  call      call an agent of a package once, in-process (for debugging)\n"
            "  keygen    create a minisign key pair for signing packages\n"
            "  sign      sign a file (FILE.minisig, minisign-compatible)\n"
            "  verify    verify a file's minisign signature\n"
            "  fetch     download a package from https:// or s3:// and verify it\n"
            "  init      write a new agent package (Python or C) to start from\n"
            "  deploy    deploy a package on a running server (FILE or URL)\n"
            "  ls        list a running server's packages\n"
            "  agents    list a running server's public agents\n"
            "  rm        remove a package (NAME or NAME@VERSION) from a running server\n"
            "  reload    deploy a package's source again on a running server\n"
            "  usage     show a running server's usage totals\n"
            "  version   print the version\n\n"
            "Run 'par <command> --help' for a command's options.\n",
            par_version());
}

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
} command_t;

static const command_t commands[] = {
    {"serve", par_cli_serve},     {"config", par_cli_config}, {"pack", par_cli_pack},
    {"inspect", par_cli_inspect}, {"call", par_cli_call},     {"keygen", par_cli_keygen},
    {"sign", par_cli_sign},       {"verify", par_cli_verify}, {"fetch", par_cli_fetch},
    {"init", par_cli_init},       {"deploy", par_cli_client}, {"ls", par_cli_client},
    {"agents", par_cli_client},   {"rm", par_cli_client},     {"reload", par_cli_client},
    {"usage", par_cli_client},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void unknown_command(const char *cmd)
{
    const char *names[NCOMMANDS + 2];
    for (size_t i = 0; i < NCOMMANDS; i++)
        names[i] = commands[i].name;
    names[NCOMMANDS] = "version";
    names[NCOMMANDS + 1] = NULL;
    const char *near = par_suggest(cmd, names);
    if (near)
        fprintf(stderr, "par: unknown command '%s' (did you mean '%s'?)\n\n", cmd, near);
    else
        fprintf(stderr, "par: unknown command '%s'\n\n", cmd);
    usage_main(stderr);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage_main(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("par %s (agent ABI %d)\n", par_version(), PAR_AGENT_ABI);
        return 0;
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    unknown_command(cmd);
    return 2;
}
