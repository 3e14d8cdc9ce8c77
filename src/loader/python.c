/*
 * loader/python.c — see python.h.
 */
#include "loader/python.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "obs/log.h"
#include "pkg/archive.h"
#include "registry/cache.h"
#include "util/fs.h"
#include "util/proc.h"

#define REQUIREMENTS_MAX_BYTES (64 * 1024)
#define PROBE_TIMEOUT_MS 10000
#define VENV_TIMEOUT_MS 60000
#define MIN_MINOR 9 /* Python >= 3.9 */

static const char *const BASE_ENV[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", NULL};

char *par__python_find_shim(const char *configured)
{
    if (configured && *configured)
        return strdup(configured);
    const char *env = getenv("PAR_PYTHON_SHIM");
    if (env && *env)
        return strdup(env);
    const char *rel[] = {"par_worker.py", "../share/par/par_worker.py"};
    char cand[PATH_MAX];
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++)
        if (par_exe_relative(rel[i], R_OK, cand, sizeof(cand)) == 0)
            return strdup(cand);
    return strdup(PAR_PYTHON_SHIM_BUILD_PATH);
}

/* Asks the interpreter for its version, once per runtime. */
static int probe(par_runtime_t *rt, par_buf_t *err)
{
    if (rt->py_minor > 0)
        return 0;
    /* Debian and most distributions: /usr/bin/python3 -> python3.11. The name
     * says the version without starting an interpreter (tens of ms). */
    char real[PATH_MAX];
    int major = 0, minor = 0;
    char tail = 0;
    if (realpath(rt->cfg.python, real) && access(real, X_OK) == 0) {
        const char *base = strrchr(real, '/');
        base = base ? base + 1 : real;
        if (sscanf(base, "python%d.%d%c", &major, &minor, &tail) == 2 && major == 3) {
            rt->py_major = major;
            rt->py_minor = minor;
            return 0;
        }
    }
    const char *argv[] = {rt->cfg.python,
                          "-I",
                          "-S",
                          "-c",
                          "import sys; print('%d.%d' % sys.version_info[:2])",
                          NULL};
    par_buf_t out;
    par_buf_init(&out, 4096);
    par_proc_result_t res;
    if (access(rt->cfg.python, X_OK) != 0) {
        par_buf_appendf(err, "the Python interpreter %s is not available: %s\n", rt->cfg.python,
                        strerror(errno));
    } else if (par_proc_run(argv, BASE_ENV, PROBE_TIMEOUT_MS, &out, &res) != PAR_OK ||
               !res.exited || res.code != 0 ||
               sscanf(out.data ? out.data : "", "%d.%d", &major, &minor) != 2) {
        par_buf_appendf(err, "the Python interpreter %s does not run (%.*s)\n", rt->cfg.python,
                        (int)(out.len > 200 ? 200 : out.len), out.data ? out.data : "");
    } else {
        rt->py_major = major;
        rt->py_minor = minor;
    }
    par_buf_free(&out);
    return rt->py_minor > 0 ? 0 : -1;
}

/* "src.main" → is there src/main.py, src/main/__init__.py or a namespace dir? */
static int module_in_package(const char *root, const char *module, int *top_present)
{
    char rel[PATH_MAX];
    snprintf(rel, sizeof(rel), "%s", module);
    for (char *p = rel; *p; p++)
        if (*p == '.')
            *p = '/';
    char top[PATH_MAX], path[PATH_MAX * 2];
    snprintf(top, sizeof(top), "%s", module);
    char *dot = strchr(top, '.');
    if (dot)
        *dot = '\0';
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", root, top);
    int dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    snprintf(path, sizeof(path), "%s/%s.py", root, top);
    *top_present = dir || stat(path, &st) == 0;
    snprintf(path, sizeof(path), "%s/%s.py", root, rel);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return 1;
    snprintf(path, sizeof(path), "%s/%s/__init__.py", root, rel);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* One requirement line (comment removed, trimmed): 0 when it is a plain
 * specifier, else appends why not. pip reads more than specifiers from a
 * requirements file (options such as --find-links, `name @ URL`, paths), and
 * any of those would let a package reach beyond the wheelhouse. */
static int check_requirement(const char *s, size_t n, const char *where, par_buf_t *err)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c >= 0x7f) {
            par_buf_appendf(err, "%s: control or non-ASCII characters are not allowed\n", where);
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '-' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) {
            par_buf_appendf(err,
                            "%s: pip options are not allowed (\"%.*s\"); only requirement "
                            "specifiers\n",
                            where, (int)(n > 80 ? 80 : n), s);
            return -1;
        }
    }
    if (memchr(s, '@', n) || memchr(s, '/', n) || memchr(s, '\\', n)) {
        par_buf_appendf(err,
                        "%s: direct references, URLs and paths are not allowed (\"%.*s\"): "
                        "requirements install only from the wheelhouse\n",
                        where, (int)(n > 80 ? 80 : n), s);
        return -1;
    }
    return 0;
}

/* requirements.txt + agent.yaml `dependencies`, one specifier per line. */
static int collect_requirements(const par_pkgver_t *pv, par_buf_t *reqs, size_t *count,
                                par_buf_t *err)
{
    int problems = 0;
    char path[PATH_MAX], where[64];
    snprintf(path, sizeof(path), "%s/requirements.txt", pv->root);
    par_buf_t text;
    par_buf_init(&text, 0);
    if (par_file_read(path, REQUIREMENTS_MAX_BYTES, &text) == 0) {
        const char *p = text.data, *end = text.data + text.len;
        size_t lineno = 0;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            const char *e = nl ? nl : end;
            lineno++;
            if (e > p && e[-1] == '\r')
                e--;
            const char *s = p;
            while (s < e && (*s == ' ' || *s == '\t'))
                s++;
            const char *c = s;
            while (c < e && !(*c == '#' && (c == s || c[-1] == ' ' || c[-1] == '\t')))
                c++;
            while (c > s && (c[-1] == ' ' || c[-1] == '\t'))
                c--;
            snprintf(where, sizeof(where), "requirements.txt:%zu", lineno);
            if (c > s && check_requirement(s, (size_t)(c - s), where, err) != 0) {
                problems++;
            } else if (c > s) {
                par_buf_append(reqs, s, (size_t)(c - s));
                par_buf_append(reqs, "\n", 1);
                (*count)++;
            }
            p = nl ? nl + 1 : end;
        }
    } else if (errno != ENOENT) {
        par_buf_appendf(err, "requirements.txt: cannot read: %s\n", strerror(errno));
        problems++;
    }
    par_buf_free(&text);
    const par_strlist_t *deps = &pv->manifest->dependencies;
    for (size_t i = 0; i < deps->count; i++) {
        const char *d = deps->items[i];
        size_t n = strlen(d);
        while (n && (*d == ' ' || *d == '\t'))
            d++, n--;
        while (n && (d[n - 1] == ' ' || d[n - 1] == '\t'))
            n--;
        snprintf(where, sizeof(where), "dependencies[%zu]", i);
        if (n == 0)
            continue;
        if (check_requirement(d, n, where, err) != 0) {
            problems++;
            continue;
        }
        par_buf_append(reqs, d, n);
        par_buf_append(reqs, "\n", 1);
        (*count)++;
    }
    par_buf_terminate(reqs); /* read as a C string in messages */
    return problems;
}

/* pip's verdict, shortened to the line that names what is missing. */
static void explain_pip(const par_buf_t *out, const char *wheelhouse, par_buf_t *err)
{
    const char *text = out->data ? out->data : "";
    const char *key = "No matching distribution found for ";
    const char *m = strstr(text, key);
    if (m) {
        m += strlen(key);
        size_t n = strcspn(m, "\r\n");
        par_buf_appendf(err, "no wheel in the wheelhouse %s satisfies the requirement '%.*s'\n",
                        wheelhouse, (int)(n > 200 ? 200 : n), m);
        return;
    }
    if (strstr(text, "No module named pip")) {
        par_buf_appendf(err, "pip is not available to the runtime's interpreter (Debian: "
                             "python3-pip)\n");
        return;
    }
    /* the last ERROR line, else the tail */
    const char *last = NULL, *p = text;
    while ((p = strstr(p, "ERROR: ")) != NULL)
        last = p++;
    if (last) {
        size_t n = strcspn(last, "\r\n");
        par_buf_appendf(err, "pip: %.*s\n", (int)(n > 300 ? 300 : n), last + 7);
    } else {
        size_t n = out->len > 300 ? 300 : out->len;
        par_buf_appendf(err, "pip failed: %.*s\n", (int)n, text + out->len - n);
    }
}

/* Builds (or finds) the virtual environment for `reqs`; sets pv->python_site. */
static int make_venv(par_runtime_t *rt, par_pkgver_t *pv, const par_buf_t *reqs, par_buf_t *err)
{
    const char *wh = rt->cfg.wheelhouse;
    if (wh == NULL || *wh == '\0') {
        size_t n = strcspn(reqs->data, "\n");
        par_buf_appendf(err,
                        "the package requires '%.*s'%s, and no wheelhouse is configured "
                        "(python.wheelhouse): PAR installs requirements only from local wheels\n",
                        (int)n, reqs->data, reqs->data[n + 1] ? " and more" : "");
        return PAR_E_DEPS_UNAVAILABLE;
    }
    /* keyed by interpreter, wheelhouse and the requirements themselves */
    par_buf_t key;
    par_buf_init(&key, 0);
    par_buf_appendf(&key, "%s\n%d.%d\n%s\n", rt->cfg.python, rt->py_major, rt->py_minor, wh);
    par_buf_append(&key, reqs->data, reqs->len);
    char digest[65];
    par_sha256_hex(key.data, key.len, digest);
    par_buf_free(&key);

    char dir[PATH_MAX], final[PATH_MAX + 80], tmp[PATH_MAX + 80], path[PATH_MAX * 2];
    snprintf(dir, sizeof(dir), "%s/venvs", rt->state_dir);
    mkdir(dir, 0755);
    snprintf(final, sizeof(final), "%s/%.32s", dir, digest);
    snprintf(path, sizeof(path), "%s/.complete", final);
    struct stat st;
    if (stat(path, &st) == 0) {
        snprintf(path, sizeof(path), "%s/lib/python%d.%d/site-packages", final, rt->py_major,
                 rt->py_minor);
        pv->python_site = strdup(path);
        return PAR_OK;
    }
    par_fs_remove(final, NULL); /* a half-built one */
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%.32s-%d", dir, digest, (int)getpid());
    par_fs_remove(tmp, NULL);

    int64_t t0 = par__now_ms();
    int rc = PAR_E_DEPS_UNAVAILABLE;
    par_buf_t out;
    par_buf_init(&out, 256 * 1024);
    par_proc_result_t res;
    const char *venv_argv[] = {rt->cfg.python, "-I", "-m", "venv", "--without-pip", tmp, NULL};
    if (par_proc_run(venv_argv, BASE_ENV, VENV_TIMEOUT_MS, &out, &res) != PAR_OK || !res.exited ||
        res.code != 0) {
        par_buf_appendf(err, "cannot create a virtual environment with %s -m venv%s: %.*s\n",
                        rt->cfg.python, res.timed_out ? " (timed out)" : "",
                        (int)(out.len > 300 ? 300 : out.len), out.data ? out.data : "");
        goto out;
    }
    snprintf(path, sizeof(path), "%s/requirements.txt", tmp);
    FILE *f = fopen(path, "we");
    if (f == NULL || fwrite(reqs->data, 1, reqs->len, f) != reqs->len) {
        if (f)
            fclose(f);
        par_buf_appendf(err, "cannot write %s: %s\n", path, strerror(errno));
        goto out;
    }
    fclose(f);
    char venv_python[PATH_MAX * 2], home[PATH_MAX * 2];
    snprintf(venv_python, sizeof(venv_python), "%s/bin/python", tmp);
    snprintf(home, sizeof(home), "HOME=%s", tmp);
    const char *pip_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", home, NULL};
    const char *pip_argv[] = {rt->cfg.python,
                              "-I",
                              "-m",
                              "pip",
                              "--isolated",
                              "--disable-pip-version-check",
                              "--no-input",
                              "--python",
                              venv_python,
                              "install",
                              "--no-index",
                              "--find-links",
                              wh,
                              "--no-cache-dir",
                              "--no-warn-script-location",
                              "--only-binary",
                              ":all:",
                              "-r",
                              path,
                              NULL};
    par_buf_reset(&out);
    if (par_proc_run(pip_argv, pip_env, rt->cfg.pip_timeout_ms, &out, &res) != PAR_OK) {
        par_buf_appendf(err, "cannot run pip: %s\n", strerror(errno));
        goto out;
    }
    if (res.timed_out) {
        par_buf_appendf(err,
                        "installing the requirements took longer than %u ms "
                        "(python.pip_timeout_ms)\n",
                        rt->cfg.pip_timeout_ms);
        goto out;
    }
    if (!res.exited || res.code != 0) {
        explain_pip(&out, wh, err);
        goto out;
    }
    snprintf(path, sizeof(path), "%s/.complete", tmp);
    f = fopen(path, "we");
    if (f == NULL) {
        par_buf_appendf(err, "cannot write %s: %s\n", path, strerror(errno));
        goto out;
    }
    fwrite(reqs->data, 1, reqs->len, f);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        fclose(f);
        par_buf_appendf(err, "cannot write %s: %s\n", path, strerror(errno));
        goto out;
    }
    fclose(f);
    if (rename(tmp, final) != 0) {
        par_buf_appendf(err, "cannot move the virtual environment into place: %s\n",
                        strerror(errno));
        goto out;
    }
    snprintf(path, sizeof(path), "%s/lib/python%d.%d/site-packages", final, rt->py_major,
             rt->py_minor);
    pv->python_site = strdup(path);
    rc = PAR_OK;
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, "python requirements installed")) {
        par_log_str(&l, "package", pv->name);
        par_log_str(&l, "version", pv->version);
        par_log_str(&l, "venv", final);
        par_log_int(&l, "ms", par__now_ms() - t0);
        par_log_end(&l);
    }
out:
    if (rc != PAR_OK)
        par_fs_remove(tmp, NULL);
    par_buf_free(&out);
    return rc;
}

int par__python_prepare(par_runtime_t *rt, par_pkgver_t *pv, par_buf_t *err)
{
    const par_manifest_t *m = pv->manifest;
    int problems = 0;
    if (probe(rt, err) != 0) {
        problems++;
    } else {
        int want = 0;
        sscanf(m->runtime, "python3.%d", &want);
        if (rt->py_major != 3 || rt->py_minor < MIN_MINOR) {
            par_buf_appendf(err, "the interpreter %s is Python %d.%d; PAR needs 3.%d or newer\n",
                            rt->cfg.python, rt->py_major, rt->py_minor, MIN_MINOR);
            problems++;
        } else if (want > rt->py_minor) {
            par_buf_appendf(err,
                            "runtime %s needs Python 3.%d or newer; the interpreter %s is "
                            "%d.%d\n",
                            m->runtime, want, rt->cfg.python, rt->py_major, rt->py_minor);
            problems++;
        }
    }
    if (access(rt->python_shim, R_OK) != 0) {
        par_buf_appendf(err, "the Python worker %s is missing: %s\n", rt->python_shim,
                        strerror(errno));
        problems++;
    }
    par_buf_t reqs;
    par_buf_init(&reqs, 0);
    size_t nreqs = 0;
    problems += collect_requirements(pv, &reqs, &nreqs, err);
    for (size_t i = 0; i < m->export_count; i++) {
        const char *entry = m->exports[i].entrypoint;
        const char *colon = strchr(entry, ':');
        char module[512];
        snprintf(module, sizeof(module), "%.*s", (int)(colon ? colon - entry : 0), entry);
        int top = 0;
        if (!module_in_package(pv->root, module, &top) && (top || nreqs == 0)) {
            par_buf_appendf(err, "%s%s: entrypoint %s: the package has no module %s\n",
                            m->exports[i].name[0] ? "sub-agent " : "",
                            m->exports[i].name[0] ? m->exports[i].name : "main export", entry,
                            module);
            problems++;
        }
    }
    int rc = PAR_OK;
    if (problems)
        rc = PAR_E_INCOMPATIBLE;
    else if (nreqs > 0)
        rc = make_venv(rt, pv, &reqs, err);
    par_buf_free(&reqs);
    return rc;
}
