/*
 * cli/cli.h — subcommands of the `par` executable that live in src/cli/.
 *
 * Each par_cli_<command>() takes the arguments after `par` (argv[0] is the
 * subcommand's name), prints its own usage on --help or misuse, and returns a
 * process exit code: 0 success, 1 failure (reason printed to stderr), 2 misuse.
 * Called from main.c on the main thread only.
 */
#ifndef PAR_CLI_CLI_H
#define PAR_CLI_CLI_H

/** 1 when argv holds --help or -h. */
int par_cli_wants_help(int argc, char **argv);

/** `par serve`: serves agent packages over HTTP until SIGTERM/SIGINT. */
int par_cli_serve(int argc, char **argv);

/** `par pack DIR -o FILE.apkg`: builds a deterministic package. */
int par_cli_pack(int argc, char **argv);

/** `par inspect FILE.apkg`: prints the manifest, exports and digest as JSON. */
int par_cli_inspect(int argc, char **argv);

/** `par call FILE.apkg|DIR AGENT [JSON]`: calls an agent once, in a temporary runtime. */
int par_cli_call(int argc, char **argv);

/** `par fetch URL`: downloads a package the way the runtime does and verifies it. */
int par_cli_fetch(int argc, char **argv);

/** `par keygen`: writes a minisign key pair (par.pub, par.key). */
int par_cli_keygen(int argc, char **argv);

/** `par sign FILE`: writes FILE.minisig with a minisign secret key. */
int par_cli_sign(int argc, char **argv);

/** `par config check|show|docs` (src/cli/serve.c). */
int par_cli_config(int argc, char **argv);

/** `par verify FILE`: checks FILE.minisig against a minisign public key. */
int par_cli_verify(int argc, char **argv);

/** `par init NAME [--python|--c]`: writes a new package directory. */
int par_cli_init(int argc, char **argv);

/** The management client (`par deploy|ls|agents|rm|reload|usage`): `argv[0]`
 *  names the command; talks to a running server's HTTP API. */
int par_cli_client(int argc, char **argv);

/** Signs `file` into `file`.minisig, as `par sign` does: `seckey_path` NULL
 *  means "par.key"; `password_file` NULL means: ask on the terminal when the
 *  key is encrypted; `trusted_comment` NULL means minisign's default
 *  ("timestamp:<unix>\tfile:<basename>\thashed"); `legacy` 1 writes a legacy
 *  ("Ed") signature instead of a prehashed one. Returns 0, or 1 after
 *  printing the reason to stderr (for `par pack --sign`). */
int par_cli_sign_file(const char *file, const char *seckey_path, const char *password_file,
                      const char *trusted_comment, int legacy);

#endif
