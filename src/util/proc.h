/*
 * util/proc.h — run a helper program to completion, with a deadline.
 *
 * Used off the event loop only (deploy threads): probing the Python
 * interpreter, creating virtual environments, installing wheels.
 */
#ifndef PAR_UTIL_PROC_H
#define PAR_UTIL_PROC_H

#include <stdint.h>

#include "util/argv.h" /* argument vectors are built with par_strvec_t */
#include "util/buf.h"

typedef struct par_proc_result {
    int exited;    /* 1 when the program exited (then `code` is its status) */
    int code;      /* exit status, or the signal that ended it */
    int timed_out; /* killed at the deadline */
} par_proc_result_t;

/*
 * Runs argv[0] (a path) with `envp`, standard input from /dev/null, standard
 * output and error collected into `out` (bounded by its limit: the last bytes
 * are kept, the oldest dropped). The program and everything it started (its process
 * group) are killed with SIGKILL when `timeout_ms` passes. Returns PAR_OK when
 * the program ran (look at `res`), PAR_E_IO when it could not be started.
 */
int par_proc_run(const char *const argv[], const char *const envp[], uint32_t timeout_ms,
                 par_buf_t *out, par_proc_result_t *res);

/* Builds "<directory of the running executable>/<rel>" into `out`; returns 0
 * when that file exists and is accessible with `mode` (access(2)), -1 otherwise. */
int par_exe_relative(const char *rel, int mode, char *out, size_t n);

/* Builds "<install prefix>/<rel>" into `out`, the prefix being the parent of
 * the directory that holds the object this code was linked into: bin/par ->
 * the prefix, lib/libpar.so -> the prefix (so a host program linked against an
 * installed libpar finds bin/par-worker and share/par/ of that install,
 * wherever it was installed). 0 when that file is accessible with `mode`. */
int par_install_relative(const char *rel, int mode, char *out, size_t n);

/* Reads a whole file of at most `cap` bytes into `out`. -1 with errno set on failure
 * (EFBIG when larger than `cap`). */
int par_file_read(const char *path, size_t cap, par_buf_t *out);

#endif
