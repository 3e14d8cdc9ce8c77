/*
 * main.c — the `par` command line: dispatches to the subcommands in src/cli/.
 */
#include <stdio.h>
#include <string.h>

#include <par/par.h>

#include "cli/cli.h"

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
    if (strcmp(cmd, "serve") == 0)
        return par_cli_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "config") == 0)
        return par_cli_config(argc - 1, argv + 1);
    if (strcmp(cmd, "pack") == 0)
        return par_cli_pack(argc - 1, argv + 1);
    if (strcmp(cmd, "inspect") == 0)
        return par_cli_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "call") == 0)
        return par_cli_call(argc - 1, argv + 1);
    if (strcmp(cmd, "keygen") == 0)
        return par_cli_keygen(argc - 1, argv + 1);
    if (strcmp(cmd, "sign") == 0)
        return par_cli_sign(argc - 1, argv + 1);
    if (strcmp(cmd, "verify") == 0)
        return par_cli_verify(argc - 1, argv + 1);
    if (strcmp(cmd, "fetch") == 0)
        return par_cli_fetch(argc - 1, argv + 1);
    if (strcmp(cmd, "init") == 0)
        return par_cli_init(argc - 1, argv + 1);
    static const char *const client_cmds[] = {"deploy", "ls", "agents", "rm", "reload", "usage"};
    for (size_t i = 0; i < sizeof(client_cmds) / sizeof(client_cmds[0]); i++)
        if (strcmp(cmd, client_cmds[i]) == 0)
            return par_cli_client(argc - 1, argv + 1);
    fprintf(stderr, "par: unknown command '%s'\n\n", cmd);
    usage_main(stderr);
    return 2;
}
