/*
 * util/path.h — making a path absolute once, at start.
 *
 * Owns the one rule for every path the runtime is given: a relative path is
 * joined to a base directory (a configuration file's directory, or the
 * current directory for flags, environment variables and defaults) and
 * normalised lexically ("." and ".." components, doubled slashes), without
 * touching the file system, so a directory that does not exist yet (the
 * state directory on first start) is handled like any other.
 * Called by config/config.c and par_runtime_new(), on any thread; never
 * changes the current directory.
 */
#ifndef PAR_UTIL_PATH_H
#define PAR_UTIL_PATH_H

/** `p` made absolute against `base` (NULL: the current directory) and
 *  normalised. Returns a malloc'd string, or NULL when out of memory or when
 *  the current directory cannot be read. */
char *par_path_absolute(const char *base, const char *p);

/** The directory part of an absolute path, malloc'd ("/etc/par/par.yaml" → "/etc/par"). */
char *par_path_dirname(const char *abs);

/* mkdir -p: creates `path` and its missing parents with `mode`; 0, or -1 with errno. */
int par_mkdir_p(const char *path, unsigned mode);

#endif
