/*
 * cli/sign.c — `par keygen`, `par sign`, `par verify`: minisign-compatible
 * keys and detached signatures from the command line (see cli.h).
 *
 * The formats and the cryptography are pkg/minisign.c's; this file reads and
 * writes files and passwords. Passwords come from a file (--password-file, "-"
 * for standard input) or from the controlling terminal (/dev/tty, echo off),
 * never from the command line, where other users could read them in the
 * process list. Password and secret key bytes are wiped after use. Files are
 * written whole or not at all: a secret key is created with O_EXCL and mode
 * 0600; a signature goes to a temporary file renamed over FILE.minisig.
 * Main thread only (the terminal prompt installs signal handlers).
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <par/par.h>

#include "pkg/minisign.h"
#include "util/buf.h"

#define DEFAULT_PUB "par.pub"
#define DEFAULT_KEY "par.key"
/* Key and signature files are tiny; this bounds what is read. */
#define SMALL_FILE_MAX (64 * 1024)
/* A legacy signature needs the whole file in memory; minisign's limit. */
#define LEGACY_MAX (1ull << 30)

/* ---- usage ----------------------------------------------------------------------- */

static void usage_keygen(FILE *f)
{
    fprintf(f, "usage: par keygen [-p FILE.pub] [-s FILE.key] [--unencrypted | --password-file F]\n"
               "                  [--force] [-c COMMENT]\n\n"
               "Creates a minisign key pair for signing packages: the secret key (mode 0600)\n"
               "and the public key, which operators list as trusted. The secret key is\n"
               "encrypted with a password unless --unencrypted; the password comes from\n"
               "--password-file or, typed twice, from the terminal. Both files work with\n"
               "minisign (minisign -S -s par.key, minisign -V -p par.pub).\n\n"
               "  -p FILE               public key file (default par.pub)\n"
               "  -s FILE               secret key file (default par.key)\n"
               "  -W, --unencrypted     do not protect the secret key with a password\n"
               "  --password-file F     read the password from the first line of F\n"
               "                        ('-': standard input)\n"
               "  -f, --force           overwrite existing key files\n"
               "  -c COMMENT            untrusted comment of the public key file\n");
}

static void usage_sign(FILE *f)
{
    fprintf(f, "usage: par sign FILE [-s FILE.key] [--password-file F] [-t COMMENT] [--legacy]\n"
               "                [-x SIGFILE] [-c COMMENT]\n\n"
               "Writes FILE.minisig, a detached minisign signature of FILE (prehashed with\n"
               "BLAKE2b-512, as minisign signs by default). `minisign -V` and `par verify`\n"
               "check it. An encrypted secret key's password comes from --password-file or\n"
               "the terminal.\n\n"
               "  -s FILE               secret key file (default par.key)\n"
               "  --password-file F     read the password from the first line of F\n"
               "                        ('-': standard input)\n"
               "  -t COMMENT            trusted (signed) comment; default\n"
               "                        \"timestamp:<unix time>\\tfile:<name>\\thashed\"\n"
               "  -l, --legacy          legacy signature of the file itself (\"Ed\"); the file\n"
               "                        must fit in memory (1 GiB at most)\n"
               "  -x SIGFILE            signature file (default FILE.minisig)\n"
               "  -c COMMENT            untrusted comment\n");
}

static void usage_verify(FILE *f)
{
    fprintf(f, "usage: par verify FILE [-p FILE.pub | -P PUBKEY] [-x SIGFILE] [-q]\n\n"
               "Checks FILE against its detached minisign signature (FILE.minisig), as\n"
               "`minisign -V` does: the key id, the signature of the contents and the\n"
               "signature of the trusted comment. Exit status 0 when all verify, 1 otherwise.\n\n"
               "  -p FILE               public key file (default par.pub)\n"
               "  -P PUBKEY             public key in base64 (\"RW...\")\n"
               "  -x SIGFILE            signature file (default FILE.minisig)\n"
               "  -q                    print nothing on success (errors still go to stderr)\n");
}

/* ---- files ----------------------------------------------------------------------- */

/* Reads a whole (small) file into `out`, refusing more than `cap` bytes. */
static int read_small(const char *cmd, const char *path, size_t cap, par_buf_t *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "par %s: %s: cannot open: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    par_buf_init(out, cap);
    /* room up front: growing would leave copies of a secret key in freed memory */
    if (par_buf_reserve(out, 4096) != PAR_OK) {
        fprintf(stderr, "par %s: %s: out of memory\n", cmd, path);
        close(fd);
        return 1;
    }
    char buf[8192];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "par %s: %s: cannot read: %s\n", cmd, path, strerror(errno));
            break;
        }
        if (r == 0) {
            close(fd);
            sodium_memzero(buf, sizeof(buf));
            if (par_buf_terminate(out) != PAR_OK) {
                fprintf(stderr, "par %s: %s: out of memory\n", cmd, path);
                par_buf_free(out);
                return 1;
            }
            return 0;
        }
        if (par_buf_append(out, buf, (size_t)r) != PAR_OK) {
            fprintf(stderr, "par %s: %s: larger than %zu bytes: not a minisign key or signature\n",
                    cmd, path, cap);
            break;
        }
    }
    close(fd);
    sodium_memzero(buf, sizeof(buf));
    par_buf_free(out);
    return 1;
}

/* Wipes a buffer that held secret material, then frees it. */
static void buf_wipe_free(par_buf_t *b)
{
    if (b->data)
        sodium_memzero(b->data, b->cap);
    par_buf_free(b);
}

/* Writes data to `path` through a temporary file in the same directory and
 * rename(), so that readers see the old file or the new one, never a part. */
static int write_replace(const char *cmd, const char *path, const char *data, size_t len)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp)) {
        fprintf(stderr, "par %s: %s: path too long\n", cmd, path);
        return 1;
    }
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "par %s: %s: cannot create a temporary file next to it: %s\n", cmd, path,
                strerror(errno));
        return 1;
    }
    mode_t um = umask(0);
    umask(um);
    size_t off = 0;
    int ok = fchmod(fd, 0666 & ~um) == 0;
    while (ok && off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += ok ? (size_t)w : 0;
    }
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        unlink(tmp);
        fprintf(stderr, "par %s: %s: cannot write: %s\n", cmd, path, strerror(saved));
        return 1;
    }
    return 0;
}

/* Creates `path` (which must not exist) with `mode` and writes data. */
static int write_new(const char *cmd, const char *path, const char *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        fprintf(stderr, "par %s: %s: cannot create: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    size_t off = 0;
    int ok = 1;
    while (ok && off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        ok = w > 0;
        off += ok ? (size_t)w : 0;
    }
    int saved = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        unlink(path);
        fprintf(stderr, "par %s: %s: cannot write: %s\n", cmd, path, strerror(saved));
        return 1;
    }
    return 0;
}

/* Streams a file through BLAKE2b-512 (for prehashed signatures). */
static int hash_file(const char *cmd, const char *path, uint8_t out[64])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "par %s: %s: cannot open: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    par_ms_hash_t h;
    par_ms_hash_init(&h);
    static char buf[1 << 16];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "par %s: %s: cannot read: %s\n", cmd, path, strerror(errno));
            close(fd);
            return 1;
        }
        if (r == 0)
            break;
        par_ms_hash_update(&h, buf, (size_t)r);
    }
    close(fd);
    par_ms_hash_final(&h, out);
    return 0;
}

/* Reads a whole file for a legacy signature, up to minisign's 1 GiB. */
static int read_message(const char *cmd, const char *path, par_buf_t *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "par %s: %s: cannot open: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    par_buf_init(out, LEGACY_MAX);
    static char buf[1 << 16];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "par %s: %s: cannot read: %s\n", cmd, path, strerror(errno));
            break;
        }
        if (r == 0) {
            close(fd);
            return 0;
        }
        int rc = par_buf_append(out, buf, (size_t)r);
        if (rc == PAR_E_TOO_LARGE) {
            fprintf(stderr,
                    "par %s: %s: larger than 1 GiB: a legacy signature needs the whole "
                    "file in memory; use a prehashed signature (the default)\n",
                    cmd, path);
            break;
        }
        if (rc != PAR_OK) {
            fprintf(stderr, "par %s: %s: out of memory\n", cmd, path);
            break;
        }
    }
    close(fd);
    par_buf_free(out);
    return 1;
}

/* ---- passwords ------------------------------------------------------------------- */

#define PW_CAP (PAR_MS_PASSWORD_MAX + 2)

/* Reads the first line of a password file ("-": standard input) into pw
 * (PW_CAP bytes), without its line end. The bytes are read with read(2), not
 * stdio, so that no copy stays in a stdio buffer. */
static int read_password_file(const char *cmd, const char *path, char *pw)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    const char *name = fd == STDIN_FILENO ? "standard input" : path;
    if (fd < 0) {
        fprintf(stderr, "par %s: password file %s: cannot open: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    size_t n = 0;
    int rc = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "par %s: password file %s: cannot read: %s\n", cmd, name,
                    strerror(errno));
            rc = 1;
            break;
        }
        if (r == 0 || c == '\n')
            break;
        if (n == PAR_MS_PASSWORD_MAX) {
            fprintf(stderr,
                    "par %s: password file %s: the first line is longer than %d bytes, "
                    "the longest password minisign reads\n",
                    cmd, name, PAR_MS_PASSWORD_MAX);
            rc = 1;
            break;
        }
        pw[n++] = c;
    }
    if (fd != STDIN_FILENO)
        close(fd);
    while (n > 0 && pw[n - 1] == '\r')
        n--;
    pw[n] = '\0';
    if (rc != 0)
        sodium_memzero(pw, PW_CAP);
    return rc;
}

static volatile sig_atomic_t tty_signal;

static void on_tty_signal(int sig)
{
    tty_signal = sig;
}

/* Prompts on the controlling terminal with echo off. Returns 0, -1 when
 * there is no terminal, 1 on another failure (reported). A signal during the
 * prompt restores the terminal and is then delivered as usual. */
static int read_tty_password(const char *cmd, const char *prompt, char *pw)
{
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct termios old, quiet;
    if (tcgetattr(fd, &old) != 0) {
        close(fd);
        return -1;
    }
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU};
    struct sigaction sa, saved[sizeof(sigs) / sizeof(sigs[0])];
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_tty_signal; /* no SA_RESTART: read() returns EINTR */
    sigemptyset(&sa.sa_mask);
    tty_signal = 0;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, &saved[i]);
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    int rc = 0;
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
        fprintf(stderr, "par %s: cannot turn off echo on the terminal: %s\n", cmd, strerror(errno));
        rc = 1;
    }
    size_t n = 0;
    if (rc == 0 && write(fd, prompt, strlen(prompt)) < 0)
        rc = 1;
    while (rc == 0 && !tty_signal) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "\npar %s: cannot read from the terminal: %s\n", cmd, strerror(errno));
            rc = 1;
            break;
        }
        if (r == 0 || c == '\n')
            break;
        if (n == PAR_MS_PASSWORD_MAX) {
            fprintf(stderr, "\npar %s: password longer than %d bytes\n", cmd, PAR_MS_PASSWORD_MAX);
            rc = 1;
            break;
        }
        pw[n++] = c;
    }
    pw[n] = '\0';
    tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        /* only cosmetic */
    }
    close(fd);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &saved[i], NULL);
    if (tty_signal) {
        sodium_memzero(pw, PW_CAP);
        raise(tty_signal);
        /* still here: the signal stopped the process (^Z) and it went on */
        fprintf(stderr, "par %s: the password prompt was interrupted; run the command again\n",
                cmd);
        return 1;
    }
    if (rc != 0)
        sodium_memzero(pw, PW_CAP);
    return rc;
}

/* ---- keygen ---------------------------------------------------------------------- */

/* The checks `par keygen` makes before it asks for a password: 0 when the
 * arguments hold together, else the exit code (2 usage, 1 a file exists). */
static int keygen_check_args(const char *pub, const char *key, const char *pwfile, int unencrypted,
                             int force)
{
    if (unencrypted && pwfile) {
        fprintf(stderr, "par keygen: --unencrypted and --password-file contradict each other: "
                        "pass one\n");
        return 2;
    }
    if (strcmp(pub, key) == 0) {
        fprintf(stderr,
                "par keygen: the public and secret key files are both %s: pass different "
                "paths to -p and -s\n",
                pub);
        return 2;
    }
    const char *paths[2] = {key, pub};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        if (lstat(paths[i], &st) == 0 && !force) {
            fprintf(stderr,
                    "par keygen: %s already exists; pass --force to overwrite it (the key "
                    "pair it belongs to is then lost)\n",
                    paths[i]);
            return 1;
        }
    }
    return 0;
}

/* Reads the new key's password into pwbuf (2 * PW_CAP bytes: the password,
 * then its confirmation) from `pwfile` or, when NULL, twice from the
 * terminal. 0 on success; else a message was printed, pwbuf is wiped and 1
 * is returned. */
static int keygen_password(const char *pwfile, char *pwbuf)
{
    char *pw = pwbuf, *pw2 = pwbuf + PW_CAP;
    int rc;
    if (pwfile) {
        rc = read_password_file("keygen", pwfile, pw);
    } else {
        rc = read_tty_password("keygen", "Password for the new secret key: ", pw);
        if (rc == 0)
            rc = read_tty_password("keygen", "Password (again): ", pw2);
        if (rc == 0 && strcmp(pw, pw2) != 0) {
            fprintf(stderr, "par keygen: the passwords do not match; nothing was written\n");
            rc = 1;
        }
    }
    if (rc < 0)
        fprintf(stderr, "par keygen: no terminal to read a password from; pass "
                        "--password-file or --unencrypted\n");
    if (rc == 0 && pw[0] == '\0') {
        fprintf(stderr, "par keygen: empty password; choose one, or pass --unencrypted for a "
                        "key without a password\n");
        rc = 1;
    }
    if (rc != 0) {
        sodium_memzero(pwbuf, 2 * PW_CAP);
        return 1;
    }
    return 0;
}

int par_cli_keygen(int argc, char **argv)
{
    if (par_cli_wants_help(argc, argv)) {
        usage_keygen(stdout);
        return 0;
    }
    const char *pub = DEFAULT_PUB, *key = DEFAULT_KEY, *pwfile = NULL, *comment = NULL;
    int unencrypted = 0, force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "-p") == 0 && has_val)
            pub = argv[++i];
        else if (strcmp(a, "-s") == 0 && has_val)
            key = argv[++i];
        else if (strcmp(a, "--password-file") == 0 && has_val)
            pwfile = argv[++i];
        else if (strcmp(a, "-c") == 0 && has_val)
            comment = argv[++i];
        else if (strcmp(a, "-W") == 0 || strcmp(a, "--unencrypted") == 0)
            unencrypted = 1;
        else if (strcmp(a, "-f") == 0 || strcmp(a, "--force") == 0)
            force = 1;
        else {
            fprintf(stderr, "par keygen: unexpected argument '%s'\n\n", a);
            usage_keygen(stderr);
            return 2;
        }
    }
    const char *paths[2] = {key, pub};
    int bad = keygen_check_args(pub, key, pwfile, unencrypted, force);
    if (bad != 0)
        return bad;

    char pwbuf[2 * PW_CAP];
    char *pw = NULL;
    if (!unencrypted) {
        pw = pwbuf;
        if (keygen_password(pwfile, pwbuf) != 0)
            return 1;
    }

    par_ms_keygen_opts_t o = {.password = pw, .comment = comment};
    par_buf_t pub_text, sec_text, err;
    par_buf_init(&pub_text, 0);
    par_buf_init(&sec_text, 0);
    par_buf_init(&err, 0);
    par_ms_pubkey_t pk;
    if (pw) {
        fprintf(stderr, "Deriving a key from the password (scrypt, 1 GiB of memory)... ");
        fflush(stderr);
    }
    int rc = par_ms_keygen(&o, &pub_text, &sec_text, &pk, &err);
    if (pw) {
        fprintf(stderr, "%s\n", rc == PAR_OK ? "done" : "failed");
        sodium_memzero(pwbuf, sizeof(pwbuf));
    }
    int exit_code = 1;
    if (rc != PAR_OK) {
        fprintf(stderr, "par keygen: %.*s", (int)err.len, err.data ? err.data : "");
        goto out;
    }
    if (force)
        for (int i = 0; i < 2; i++)
            if (unlink(paths[i]) != 0 && errno != ENOENT) {
                fprintf(stderr, "par keygen: %s: cannot remove the old file: %s\n", paths[i],
                        strerror(errno));
                goto out;
            }
    if (write_new("keygen", key, sec_text.data, sec_text.len, 0600) != 0)
        goto out;
    if (write_new("keygen", pub, pub_text.data, pub_text.len, 0644) != 0) {
        unlink(key);
        goto out;
    }
    char b64[57];
    par_ms_pubkey_base64(&pk, b64);
    printf("Secret key written to %s (%s); keep it secret.\n"
           "Public key written to %s.\n"
           "Key id: %s\n"
           "Public key: %s\n",
           key, unencrypted ? "not encrypted" : "encrypted with the password", pub, pk.id, b64);
    exit_code = 0;
out:
    buf_wipe_free(&sec_text);
    par_buf_free(&pub_text);
    par_buf_free(&err);
    return exit_code;
}

/* ---- sign ------------------------------------------------------------------------ */

/* `par sign` and par_cli_sign_file(): everything but argument parsing. */
static int sign_file(const char *file, const char *seckey_path, const char *pwfile,
                     const char *trusted_comment, const char *untrusted_comment,
                     const char *sig_path, int legacy)
{
    if (seckey_path == NULL)
        seckey_path = DEFAULT_KEY;
    par_buf_t keytext, err, out, msg;
    if (read_small("sign", seckey_path, SMALL_FILE_MAX, &keytext) != 0)
        return 1;
    par_buf_init(&err, 0);
    par_buf_init(&out, 0);
    par_buf_init(&msg, 0);
    par_ms_seckey_t sk;
    char pw[PW_CAP];
    char *sig_default = NULL;
    int exit_code = 1;
    memset(&sk, 0, sizeof(sk));
    memset(pw, 0, sizeof(pw));
    int enc = par_ms_seckey_is_encrypted(keytext.data, keytext.len);
    if (enc == 1) {
        int rc;
        if (pwfile) {
            rc = read_password_file("sign", pwfile, pw);
        } else {
            char prompt[PATH_MAX + 32];
            snprintf(prompt, sizeof(prompt), "Password for %s: ", seckey_path);
            rc = read_tty_password("sign", prompt, pw);
            if (rc < 0)
                fprintf(stderr,
                        "par sign: %s is encrypted and there is no terminal to read its "
                        "password from; pass --password-file\n",
                        seckey_path);
        }
        if (rc != 0)
            goto out;
    }
    /* a malformed key (enc < 0) is reported by the load below */
    int rc = par_ms_seckey_load(keytext.data, keytext.len, enc == 1 ? pw : NULL, &sk, &err);
    if (rc != PAR_OK) {
        fprintf(stderr, "par sign: %s: %.*s", seckey_path, (int)err.len, err.data ? err.data : "");
        goto out;
    }
    uint8_t h[64];
    if (legacy ? read_message("sign", file, &msg) != 0 : hash_file("sign", file, h) != 0)
        goto out;
    par_ms_sign_opts_t o = {.legacy = legacy,
                            .trusted_comment = trusted_comment,
                            .file_name = file,
                            .untrusted_comment = untrusted_comment};
    rc = par_ms_sign(&sk, legacy ? msg.data : NULL, legacy ? msg.len : 0, legacy ? NULL : h, &o,
                     &out, &err);
    if (rc != PAR_OK) {
        fprintf(stderr, "par sign: %s: %.*s", file, (int)err.len, err.data ? err.data : "");
        goto out;
    }
    if (sig_path == NULL) {
        size_t n = strlen(file) + sizeof(".minisig");
        sig_default = malloc(n);
        if (sig_default == NULL) {
            fprintf(stderr, "par sign: out of memory\n");
            goto out;
        }
        snprintf(sig_default, n, "%s.minisig", file);
        sig_path = sig_default;
    }
    if (write_replace("sign", sig_path, out.data, out.len) != 0)
        goto out;
    printf("Signature of %s written to %s (key id %s).\n", file, sig_path, sk.id);
    exit_code = 0;
out:
    par_ms_seckey_wipe(&sk);
    sodium_memzero(pw, sizeof(pw));
    free(sig_default);
    buf_wipe_free(&keytext);
    par_buf_free(&err);
    par_buf_free(&out);
    par_buf_free(&msg);
    return exit_code;
}

int par_cli_sign_file(const char *file, const char *seckey_path, const char *password_file,
                      const char *trusted_comment, int legacy)
{
    return sign_file(file, seckey_path, password_file, trusted_comment, NULL, NULL, legacy);
}

int par_cli_sign(int argc, char **argv)
{
    if (par_cli_wants_help(argc, argv)) {
        usage_sign(stdout);
        return 0;
    }
    const char *file = NULL, *key = NULL, *pwfile = NULL, *tc = NULL, *uc = NULL, *sig = NULL;
    int legacy = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "-s") == 0 && has_val)
            key = argv[++i];
        else if (strcmp(a, "--password-file") == 0 && has_val)
            pwfile = argv[++i];
        else if (strcmp(a, "-t") == 0 && has_val)
            tc = argv[++i];
        else if (strcmp(a, "-c") == 0 && has_val)
            uc = argv[++i];
        else if (strcmp(a, "-x") == 0 && has_val)
            sig = argv[++i];
        else if (strcmp(a, "-l") == 0 || strcmp(a, "--legacy") == 0)
            legacy = 1;
        else if (file == NULL && (a[0] != '-' || a[1] == '\0'))
            file = a;
        else {
            fprintf(stderr, "par sign: unexpected argument '%s'\n\n", a);
            usage_sign(stderr);
            return 2;
        }
    }
    if (file == NULL) {
        fprintf(stderr, "par sign: which file? Name the file to sign\n\n");
        usage_sign(stderr);
        return 2;
    }
    return sign_file(file, key, pwfile, tc, uc, sig, legacy);
}

/* ---- verify ---------------------------------------------------------------------- */

/* The public key `par verify` checks with: -P's string, else the file -p
 * names (or the default). 0, or 1 after a message. */
static int verify_pubkey(const char *pubstr, const char *pubfile, par_ms_pubkey_t *pk,
                         par_buf_t *pubtext, par_buf_t *err)
{
    int rc;
    if (pubstr) {
        rc = par_ms_pubkey_parse(pubstr, strlen(pubstr), pk, err);
        if (rc != PAR_OK) {
            fprintf(stderr, "par verify: -P: %.*s", (int)err->len, err->data ? err->data : "");
            return 1;
        }
        return 0;
    }
    if (pubfile == NULL)
        pubfile = DEFAULT_PUB;
    if (read_small("verify", pubfile, SMALL_FILE_MAX, pubtext) != 0)
        return 1;
    rc = par_ms_pubkey_parse(pubtext->data, pubtext->len, pk, err);
    if (rc != PAR_OK) {
        fprintf(stderr, "par verify: %s: %.*s", pubfile, (int)err->len, err->data ? err->data : "");
        return 1;
    }
    return 0;
}

int par_cli_verify(int argc, char **argv)
{
    if (par_cli_wants_help(argc, argv)) {
        usage_verify(stdout);
        return 0;
    }
    const char *file = NULL, *pubfile = NULL, *pubstr = NULL, *sig_path = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "-p") == 0 && has_val)
            pubfile = argv[++i];
        else if (strcmp(a, "-P") == 0 && has_val)
            pubstr = argv[++i];
        else if (strcmp(a, "-x") == 0 && has_val)
            sig_path = argv[++i];
        else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0)
            quiet = 1;
        else if (file == NULL && (a[0] != '-' || a[1] == '\0'))
            file = a;
        else {
            fprintf(stderr, "par verify: unexpected argument '%s'\n\n", a);
            usage_verify(stderr);
            return 2;
        }
    }
    if (file == NULL) {
        fprintf(stderr, "par verify: which file? Name the file to verify\n\n");
        usage_verify(stderr);
        return 2;
    }
    if (pubfile && pubstr) {
        fprintf(stderr, "par verify: -p and -P both name a public key: pass one\n");
        return 2;
    }
    par_buf_t pubtext, sigtext, err, msg;
    par_buf_init(&pubtext, 0);
    par_buf_init(&sigtext, 0);
    par_buf_init(&err, 0);
    par_buf_init(&msg, 0);
    par_ms_sig_t sig = {0};
    char *sig_default = NULL;
    int exit_code = 1, rc;
    if (sig_path == NULL) {
        size_t n = strlen(file) + sizeof(".minisig");
        sig_default = malloc(n);
        if (sig_default == NULL) {
            fprintf(stderr, "par verify: out of memory\n");
            goto out;
        }
        snprintf(sig_default, n, "%s.minisig", file);
        sig_path = sig_default;
    }
    par_ms_pubkey_t pk;
    if (verify_pubkey(pubstr, pubfile, &pk, &pubtext, &err) != 0)
        goto out;
    if (read_small("verify", sig_path, SMALL_FILE_MAX, &sigtext) != 0)
        goto out;
    rc = par_ms_sig_parse(sigtext.data, sigtext.len, &sig, &err);
    if (rc != PAR_OK) {
        fprintf(stderr, "par verify: %s: %.*s", sig_path, (int)err.len, err.data ? err.data : "");
        goto out;
    }
    uint8_t h[64];
    if (sig.prehashed ? hash_file("verify", file, h) != 0 : read_message("verify", file, &msg) != 0)
        goto out;
    rc = par_ms_verify(&pk, &sig, sig.prehashed ? NULL : msg.data, sig.prehashed ? 0 : msg.len,
                       sig.prehashed ? h : NULL, &err);
    if (rc != PAR_OK) {
        fprintf(stderr, "par verify: %s: %s: %.*s", file, par_status_name(rc), (int)err.len,
                err.data ? err.data : "");
        goto out;
    }
    if (!quiet)
        printf("Signature and comment signature verified\nTrusted comment: %s\n",
               sig.trusted_comment);
    exit_code = 0;
out:
    par_ms_sig_free(&sig);
    free(sig_default);
    par_buf_free(&pubtext);
    par_buf_free(&sigtext);
    par_buf_free(&err);
    par_buf_free(&msg);
    return exit_code;
}
