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

#include "core/call.h"
#include "obs/log.h"
#include "pkg/archive.h"
#include "pkg/compat.h"
#include "registry/cache.h"
#include "util/fs.h"
#include "util/proc.h"

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
    if (par_install_relative("share/par/par_worker.py", R_OK, cand, sizeof(cand)) == 0)
        return strdup(cand);
    return strdup(PAR_PYTHON_SHIM_BUILD_PATH);
}

/* Asks the interpreter for its version, once per runtime. */
static int probe(par_python_t *py, par_buf_t *err)
{
    if (py->minor > 0)
        return 0;
    /* Debian and most distributions: /usr/bin/python3 -> python3.11. The name
     * says the version without starting an interpreter (tens of ms). */
    char real[PATH_MAX];
    int major = 0, minor = 0;
    char tail = 0;
    if (realpath(py->python, real) && access(real, X_OK) == 0) {
        const char *base = strrchr(real, '/');
        base = base ? base + 1 : real;
        if (sscanf(base, "python%d.%d%c", &major, &minor, &tail) == 2 && major == 3) {
            py->major = major;
            py->minor = minor;
            return 0;
        }
    }
    const char *argv[] = {
        py->python, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])", NULL};
    par_buf_t out;
    par_buf_init(&out, 4096);
    par_proc_result_t res;
    if (access(py->python, X_OK) != 0) {
        par_buf_appendf(err, "the Python interpreter %s is not available: %s\n", py->python,
                        strerror(errno));
    } else if (par_proc_run(argv, BASE_ENV, PROBE_TIMEOUT_MS, &out, &res) != PAR_OK ||
               !res.exited || res.code != 0 ||
               sscanf(out.data ? out.data : "", "%d.%d", &major, &minor) != 2) {
        par_buf_appendf(err, "the Python interpreter %s does not run (%.*s)\n", py->python,
                        (int)(out.len > 200 ? 200 : out.len), out.data ? out.data : "");
    } else {
        py->major = major;
        py->minor = minor;
    }
    par_buf_free(&out);
    return py->minor > 0 ? 0 : -1;
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

/* The site-packages directory of the venv at `dir`, into *site. */
static int set_site(const par_python_t *py, const char *dir, char **site)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/lib/python%d.%d/site-packages", dir, py->major, py->minor);
    *site = strdup(path);
    return *site ? PAR_OK : PAR_E_NO_MEMORY;
}

/* Writes `data` to `path`, synced when `sync`. */
static int write_file(const char *path, const par_buf_t *data, int sync, par_buf_t *err)
{
    FILE *f = fopen(path, "we");
    int ok = f && fwrite(data->data, 1, data->len, f) == data->len &&
             (!sync || (fflush(f) == 0 && fsync(fileno(f)) == 0));
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok)
        par_buf_appendf(err, "cannot write %s: %s\n", path, strerror(errno));
    return ok ? 0 : -1;
}

/* `python -m venv` into tmp, then pip installs `reqs` into it from the
 * wheelhouse only. */
static int build_venv(const par_python_t *py, const char *tmp, const par_buf_t *reqs,
                      par_buf_t *err)
{
    int rc = -1;
    par_buf_t out;
    par_buf_init(&out, 256 * 1024);
    par_proc_result_t res;
    char path[PATH_MAX * 2], venv_python[PATH_MAX * 2], home[PATH_MAX * 2];
    const char *venv_argv[] = {py->python, "-I", "-m", "venv", "--without-pip", tmp, NULL};
    if (par_proc_run(venv_argv, BASE_ENV, VENV_TIMEOUT_MS, &out, &res) != PAR_OK || !res.exited ||
        res.code != 0) {
        par_buf_appendf(err, "cannot create a virtual environment with %s -m venv%s: %.*s\n",
                        py->python, res.timed_out ? " (timed out)" : "",
                        (int)(out.len > 300 ? 300 : out.len), out.data ? out.data : "");
        goto out;
    }
    snprintf(path, sizeof(path), "%s/requirements.txt", tmp);
    if (write_file(path, reqs, 0, err) != 0)
        goto out;
    snprintf(venv_python, sizeof(venv_python), "%s/bin/python", tmp);
    snprintf(home, sizeof(home), "HOME=%s", tmp);
    const char *pip_env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", home, NULL};
    const char *pip_argv[] = {py->python,
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
                              py->wheelhouse,
                              "--no-cache-dir",
                              "--no-warn-script-location",
                              "--only-binary",
                              ":all:",
                              "-r",
                              path,
                              NULL};
    par_buf_reset(&out);
    if (par_proc_run(pip_argv, pip_env, py->pip_timeout_ms, &out, &res) != PAR_OK)
        par_buf_appendf(err, "cannot run pip: %s\n", strerror(errno));
    else if (res.timed_out)
        par_buf_appendf(err,
                        "installing the requirements took longer than %u ms "
                        "(python.pip_timeout_ms)\n",
                        py->pip_timeout_ms);
    else if (!res.exited || res.code != 0)
        explain_pip(&out, py->wheelhouse, err);
    else
        rc = 0;
out:
    par_buf_free(&out);
    return rc;
}

static void log_installed(const par_python_pkg_t *pkg, const char *venv, int64_t t0)
{
    par_logline_t l;
    if (par_log_begin(&l, PAR_LOG_INFO, "python requirements installed")) {
        par_log_str(&l, "package", pkg->name);
        par_log_str(&l, "version", pkg->version);
        par_log_str(&l, "venv", venv);
        par_log_int(&l, "ms", par__now_ms() - t0);
        par_log_end(&l);
    }
}

/* Builds (or finds) the virtual environment for `reqs`; sets *site. */
static int make_venv(const par_python_t *py, const par_python_pkg_t *pkg, const par_buf_t *reqs,
                     char **site, par_buf_t *err)
{
    const char *wh = py->wheelhouse;
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
    par_buf_appendf(&key, "%s\n%d.%d\n%s\n", py->python, py->major, py->minor, wh);
    par_buf_append(&key, reqs->data, reqs->len);
    char digest[65];
    par_sha256_hex(key.data, key.len, digest);
    par_buf_free(&key);

    char dir[PATH_MAX], final[PATH_MAX + 80], tmp[PATH_MAX + 80], path[PATH_MAX * 2];
    snprintf(dir, sizeof(dir), "%s/venvs", py->state_dir);
    mkdir(dir, 0755);
    snprintf(final, sizeof(final), "%s/%.32s", dir, digest);
    snprintf(path, sizeof(path), "%s/.complete", final);
    struct stat st;
    if (stat(path, &st) == 0)
        return set_site(py, final, site);
    par_fs_remove(final, NULL); /* a half-built one */
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%.32s-%d", dir, digest, (int)getpid());
    par_fs_remove(tmp, NULL);

    int64_t t0 = par__now_ms();
    int rc = PAR_E_DEPS_UNAVAILABLE;
    snprintf(path, sizeof(path), "%s/.complete", tmp);
    if (build_venv(py, tmp, reqs, err) != 0 || write_file(path, reqs, 1, err) != 0)
        goto out;
    if (rename(tmp, final) != 0) {
        par_buf_appendf(err, "cannot move the virtual environment into place: %s\n",
                        strerror(errno));
        goto out;
    }
    rc = set_site(py, final, site);
    if (rc == PAR_OK)
        log_installed(pkg, final, t0);
out:
    if (rc != PAR_OK)
        par_fs_remove(tmp, NULL);
    return rc;
}

int par_python_prepare(par_python_t *py, const par_python_pkg_t *pkg, char **site, par_buf_t *err)
{
    const par_manifest_t *m = pkg->manifest;
    *site = NULL;
    int problems = 0;
    if (probe(py, err) != 0) {
        problems++;
    } else {
        int want = 0;
        sscanf(m->runtime, "python3.%d", &want);
        if (py->major != 3 || py->minor < MIN_MINOR) {
            par_buf_appendf(err, "the interpreter %s is Python %d.%d; PAR needs 3.%d or newer\n",
                            py->python, py->major, py->minor, MIN_MINOR);
            problems++;
        } else if (want > py->minor) {
            par_buf_appendf(err,
                            "runtime %s needs Python 3.%d or newer; the interpreter %s is "
                            "%d.%d\n",
                            m->runtime, want, py->python, py->major, py->minor);
            problems++;
        }
    }
    if (access(py->shim, R_OK) != 0) {
        par_buf_appendf(err, "the Python worker %s is missing: %s\n", py->shim, strerror(errno));
        problems++;
    }
    par_buf_t reqs;
    par_buf_init(&reqs, 0);
    size_t nreqs = 0;
    problems += par_pkg_requirements(pkg->root, m, &reqs, &nreqs, err);
    /* that each entrypoint's module is in the package was checked by pkg/compat.c */
    int rc = PAR_OK;
    if (problems)
        rc = PAR_E_INCOMPATIBLE;
    else if (nreqs > 0)
        rc = make_venv(py, pkg, &reqs, site, err);
    par_buf_free(&reqs);
    return rc;
}
