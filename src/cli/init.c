/*
 * cli/init.c — `par init NAME [--python|--c] [--dir DIR]`: writes a new
 * package directory in pixell-kit's layout that packs, inspects clean and
 * answers as written.
 *
 * Python (the default): agent.yaml, src/__init__.py, src/main.py, .env,
 * requirements.txt. C: agent.yaml, src/NAME.c and a Makefile that builds
 * lib/libNAME.so against the agent ABI header of this par's own install
 * (PREFIX/include) or, from a build tree, of its source tree.
 *
 * Called from main.c on the main thread. Never overwrites: an existing,
 * non-empty target directory is refused before anything is written.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "pkg/manifest.h"
#include "util/buf.h"
#include "util/proc.h"

static void usage_init(FILE *f)
{
    fprintf(f, "usage: par init NAME [--python | --c] [--dir DIR]\n\n"
               "Writes a new agent package NAME in DIR (default ./NAME), in pixell-kit's\n"
               "layout: agent.yaml and src/, with .env and requirements.txt (--python, the\n"
               "default) or a Makefile building lib/libNAME.so (--c). NAME: lower-case\n"
               "letters, digits and '-', starting with a letter. Then:\n"
               "  --python:  par pack NAME -o NAME-0.1.0.apkg\n"
               "  --c:       make -C NAME && par pack NAME -o NAME-0.1.0.apkg\n");
}

/* One file of a template: `@NAME@`, `@FUNC@` (NAME with '_' for '-'),
 * `@AUTHOR@`, `@PAR@` (this executable) and `@INCLUDE@` are substituted. */
typedef struct tmpl_file {
    const char *path;
    const char *text;
} tmpl_file_t;

static const tmpl_file_t PYTHON_FILES[] = {
    {"agent.yaml", "# @NAME@: a Python agent in pixell-kit's layout (docs/agent-yaml.md).\n"
                   "version: \"1.0\"\n"
                   "name: @NAME@\n"
                   "display_name: @NAME@\n"
                   "description: Greets whoever it is given.\n"
                   "author: @AUTHOR@\n"
                   "license: MIT\n"
                   "entrypoint: src.main:handler\n"
                   "runtime: python3.11\n"
                   "environment:\n"
                   "  GREETING: Hello\n"
                   "dependencies: []\n"
                   "metadata:\n"
                   "  version: 0.1.0\n"},
    {"src/__init__.py", ""},
    {"src/main.py",
     "\"\"\"@NAME@: the main export. PAR calls handler(input, context) with the\n"
     "request's `input` (any JSON value) and returns what it returns as `output`\n"
     "(docs/python-agents.md: context.call, context.usage, logging).\"\"\"\n"
     "import os\n"
     "\n"
     "\n"
     "def handler(input, context):\n"
     "    name = input.get(\"name\", \"world\") if isinstance(input, dict) else \"world\"\n"
     "    greeting = os.environ.get(\"GREETING\", \"Hello\")\n"
     "    return {\"message\": f\"{greeting}, {name}{os.environ.get('PUNCTUATION', '!')}\"}\n"},
    {".env", "# Local settings (KEY=value), read by PAR as pixell-kit's dev server reads them.\n"
             "PUNCTUATION=!\n"},
    {"requirements.txt", "# One requirement per line (pip syntax); PAR installs them when the\n"
                         "# package deploys (docs/python-agents.md).\n"},
    {NULL, NULL},
};

static const tmpl_file_t C_FILES[] = {
    {"agent.yaml", "# @NAME@: a native agent (docs/agent-yaml.md, docs/native-agents.md).\n"
                   "# Build lib/lib@NAME@.so with `make`, then pack the directory.\n"
                   "version: \"1.0\"\n"
                   "name: @NAME@\n"
                   "display_name: @NAME@\n"
                   "description: Answers with the input it was given.\n"
                   "author: @AUTHOR@\n"
                   "license: MIT\n"
                   "runtime: native\n"
                   "entrypoint: lib/lib@NAME@.so:@FUNC@\n"
                   "metadata:\n"
                   "  version: 0.1.0\n"
                   "  par:\n"
                   "    abi: 1\n"},
    {"src/@NAME@.c",
     "/*\n"
     " * @NAME@: a native PAR agent. One C function per export (par/agent.h,\n"
     " * docs/native-agents.md); @FUNC@ answers {\"agent\":\"@NAME@\",\"input\":INPUT}.\n"
     " */\n"
     "#include <par/agent.h>\n"
     "\n"
     "const unsigned par_agent_abi = PAR_AGENT_ABI;\n"
     "\n"
     "int @FUNC@(par_agent_ctx_t *ctx, par_slice_t input, par_out_t *out);\n"
     "\n"
     "int @FUNC@(par_agent_ctx_t *ctx, par_slice_t input, par_out_t *out)\n"
     "{\n"
     "    static const char head[] = \"{\\\"agent\\\":\\\"@NAME@\\\",\\\"input\\\":\";\n"
     "    (void)ctx;\n"
     "    if (par_out_write(out, head, sizeof(head) - 1) != 0 ||\n"
     "        par_out_write(out, input.ptr, input.len) != 0)\n"
     "        return 1;\n"
     "    return par_out_write(out, \"}\", 1);\n"
     "}\n"},
    {"Makefile", "# Builds lib/lib@NAME@.so, the code of the native agent @NAME@, against PAR's\n"
                 "# agent ABI header (par/agent.h). PAR_INCLUDE is where `par init` found it:\n"
                 "# the include/ of its install, or of its source tree; `make PAR_INCLUDE=DIR`\n"
                 "# picks other headers. `make apkg` packs ../@NAME@-0.1.0.apkg.\n"
                 "PAR ?= @PAR@\n"
                 "PAR_INCLUDE ?= @INCLUDE@\n"
                 "CFLAGS ?= -O2 -g\n"
                 "CFLAGS += -Wall -Wextra -fPIC -I$(PAR_INCLUDE)\n"
                 "\n"
                 "all: lib/lib@NAME@.so\n"
                 "\n"
                 "lib/lib@NAME@.so: src/@NAME@.c\n"
                 "\t@mkdir -p lib\n"
                 "\t$(CC) $(CFLAGS) -shared -o $@ $< $(LDFLAGS)\n"
                 "\n"
                 "apkg: all\n"
                 "\t$(PAR) pack . -o ../@NAME@-0.1.0.apkg\n"
                 "\n"
                 "clean:\n"
                 "\trm -rf lib\n"
                 "\n"
                 ".PHONY: all apkg clean\n"},
    {NULL, NULL},
};

typedef struct subst {
    const char *name, *func, *author, *par, *include;
} subst_t;

static void expand(par_buf_t *b, const char *text, const subst_t *s)
{
    static const char *const keys[] = {"@NAME@", "@FUNC@", "@AUTHOR@", "@PAR@", "@INCLUDE@"};
    const char *vals[] = {s->name, s->func, s->author, s->par, s->include};
    while (*text) {
        size_t k = 0;
        while (k < 5 && strncmp(text, keys[k], strlen(keys[k])) != 0)
            k++;
        if (k < 5) {
            par_buf_append(b, vals[k], strlen(vals[k]));
            text += strlen(keys[k]);
        } else {
            par_buf_append(b, text++, 1);
        }
    }
}

static int write_tree(const char *dir, const tmpl_file_t *files, const subst_t *s)
{
    for (const tmpl_file_t *f = files; f->path; f++) {
        par_buf_t rel, body;
        par_buf_init(&rel, 0), par_buf_init(&body, 0);
        par_buf_appendf(&rel, "%s/", dir);
        expand(&rel, f->path, s);
        expand(&body, f->text, s);
        par_buf_append(&rel, "", 1); /* NUL */
        char *slash = strrchr(rel.data, '/');
        *slash = '\0';
        /* the templates are one level deep: DIR/ and DIR/src/ */
        int ok = (mkdir(dir, 0755) == 0 || errno == EEXIST) &&
                 (mkdir(rel.data, 0755) == 0 || errno == EEXIST);
        *slash = '/';
        FILE *out = ok ? fopen(rel.data, "wx") : NULL;
        ok = out && fwrite(body.data ? body.data : "", 1, body.len, out) == body.len;
        if (out && fclose(out) != 0)
            ok = 0;
        if (!ok)
            fprintf(stderr, "par init: %s: %s\n", rel.data, strerror(errno));
        par_buf_free(&rel), par_buf_free(&body);
        if (!ok)
            return 1;
    }
    return 0;
}

/* The directory holding par/agent.h: this install's include/, else the
 * source tree this par was built from. */
static int find_include(char *out, size_t n)
{
    if (par_install_relative("include/par/agent.h", R_OK, out, n) == 0) {
        *strrchr(out, '/') = '\0';
        *strrchr(out, '/') = '\0';
        return 0;
    }
    if ((size_t)snprintf(out, n, "%s/par/agent.h", PAR_INCLUDE_BUILD_PATH) < n &&
        access(out, R_OK) == 0) {
        snprintf(out, n, "%s", PAR_INCLUDE_BUILD_PATH);
        return 0;
    }
    return -1;
}

/* Refuses an existing, non-empty directory (and anything that is not one). */
static int target_free(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    int used = 0;
    while ((de = readdir(d)) != NULL)
        used |= strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return used ? -1 : 0;
}

/* On a mistake, says in `why` which argument is wrong. */
static int parse_init_args(int argc, char **argv, const char **name, const char **dir, int *c,
                           char *why, size_t cap)
{
    int lang = -1;
    for (int i = 1; i < argc; i++) {
        int l = strcmp(argv[i], "--python") == 0 ? 0 : strcmp(argv[i], "--c") == 0 ? 1 : -1;
        if (l >= 0 && lang >= 0 && l != lang) {
            snprintf(why, cap, "--python and --c: choose one");
            return -1;
        }
        if (l >= 0)
            lang = *c = l;
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            *dir = argv[++i];
        else if (strcmp(argv[i], "--dir") == 0) {
            snprintf(why, cap, "--dir needs a directory");
            return -1;
        } else if (*name == NULL && argv[i][0] != '-')
            *name = argv[i];
        else {
            snprintf(why, cap, "%s `%s`",
                     argv[i][0] == '-' ? "unknown option" : "unexpected argument", argv[i]);
            return -1;
        }
    }
    if (*name == NULL)
        snprintf(why, cap, "the package NAME is required");
    return *name ? 0 : -1;
}

int par_cli_init(int argc, char **argv)
{
    if (par_cli_wants_help(argc, argv)) {
        usage_init(stdout);
        return 0;
    }
    const char *name = NULL, *dir = NULL;
    int c = 0;
    char why[300];
    if (parse_init_args(argc, argv, &name, &dir, &c, why, sizeof(why)) != 0) {
        fprintf(stderr, "par init: %s\n", why);
        usage_init(stderr);
        return 2;
    }
    if (!par_manifest_valid_name(name, strlen(name))) {
        fprintf(stderr,
                "par init: invalid_argument: '%s' is not a package name (lower-case "
                "letters, digits and '-', starting with a letter, at most 64)\n",
                name);
        return 2;
    }
    dir = dir ? dir : name;
    if (target_free(dir) != 0) {
        fprintf(stderr, "par init: %s exists and is not an empty directory; nothing written\n",
                dir);
        return 1;
    }
    char func[72], exe[PATH_MAX], inc[PATH_MAX];
    snprintf(func, sizeof(func), "%s", name);
    for (char *p = func; *p; p++)
        *p = *p == '-' ? '_' : *p;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0)
        exe[n] = '\0';
    else
        snprintf(exe, sizeof(exe), "par"); /* the Makefile then finds par on PATH */
    if (c && find_include(inc, sizeof(inc)) != 0) {
        fprintf(stderr, "par init: warning: par/agent.h not found beside this par; set "
                        "PAR_INCLUDE when running make\n");
        snprintf(inc, sizeof(inc), "/usr/local/include");
    }
    const char *user = getenv("USER");
    subst_t s = {name, func, user && *user ? user : "unknown", exe, c ? inc : ""};
    if (write_tree(dir, c ? C_FILES : PYTHON_FILES, &s) != 0)
        return 1;
    printf("created %s (%s agent %s)\nnext: %s%s%spar pack %s -o %s-0.1.0.apkg\n", dir,
           c ? "native" : "Python", name, c ? "make -C " : "", c ? dir : "", c ? " && " : "", dir,
           name);
    return 0;
}
