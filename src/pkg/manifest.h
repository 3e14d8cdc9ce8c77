/*
 * pkg/manifest.h — agent.yaml: parsing and strict validation.
 *
 * Owns: the in-memory form of a package manifest (pixell-kit schema plus the
 * `metadata.par` block, DESIGN.md section 2) and the list of exports derived
 * from it. Called by runtime/deploy.c at deploy time and by the CLI (inspect,
 * pack). Never touches the file system beyond what it is given: it parses bytes.
 * Any thread; a manifest is immutable once parsed.
 */
#ifndef PAR_PKG_MANIFEST_H
#define PAR_PKG_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Hard cap on the size of agent.yaml. */
#define PAR_MANIFEST_MAX_BYTES (256 * 1024)

typedef enum par_runtime_kind {
    PAR_RUNTIME_NATIVE = 0,
    PAR_RUNTIME_PYTHON = 1,
    PAR_RUNTIME_OTHER = 2, /* no loader: refused at deploy */
} par_runtime_kind_t;

typedef struct par_strlist {
    char **items;
    size_t count;
} par_strlist_t;

typedef struct par_kv {
    char *key;
    char *value;
} par_kv_t;

/* One callable export of a package. */
typedef struct par_export {
    char *name;        /* "" for the main export, else the sub-agent/export name */
    char *description; /* may be "" */
    char *entrypoint;  /* "module:function" or "path/lib.so:symbol" */
    char *field;       /* where the entrypoint is written ("metadata.sub_agents[1].entrypoint") */
    int is_public;
    par_strlist_t capabilities;
    /* The agent's A2A skills ([{id,name,description,tags,examples}]) and its
     * input's JSON Schema, as compact JSON text; NULL when not declared. A
     * sub-agent or export declares them in its own entry (`skills`,
     * `input_schema`); the main export has metadata.par's. */
    char *skills_json, *input_schema_json;
} par_export_t;

typedef struct par_limits {
    uint32_t timeout_ms;   /* 0 = operator default */
    uint32_t memory_mb;    /* 0 = operator default */
    uint32_t concurrency;  /* 0 = operator default */
    uint32_t max_input_kb; /* 0 = operator default */
} par_limits_t;

typedef struct par_manifest {
    char *name;                                          /* required, ^[a-z][a-z0-9-]*$ */
    char *format_version;                                /* `version`, default "1.0" */
    char *display_name, *description, *author, *license; /* "" when absent */
    char *entrypoint;                                    /* NULL when absent */
    char *runtime; /* as written; "python3.11" when absent (pixell-kit's default) */
    par_runtime_kind_t runtime_kind;
    char *package_version; /* metadata.version, required, semver */
    par_strlist_t capabilities;
    par_kv_t *environment; /* in file order */
    size_t environment_count;
    par_strlist_t dependencies;

    /* metadata.par */
    char *par_requires; /* semver range or NULL */
    int par_abi;        /* -1 when absent */
    par_limits_t limits;
    /* metadata.par.calls: fnmatch patterns of the agent ids this package may
     * call, NULL-terminated; NULL when not declared (no restriction). */
    char **calls;
    /* metadata.par.skills and metadata.par.input_schema (the main agent's A2A
     * skills, [{id,name,description,tags,examples}], and its input's JSON
     * Schema) as compact JSON text; NULL when absent. The main export carries
     * a copy (par_export_t.skills_json), which is what the protocols read. */
    char *skills_json, *input_schema_json;

    /* exports: main (when entrypoint is set) first, then sub_agents, then par.exports */
    par_export_t *exports;
    size_t export_count;

    /* pixell-kit's `mcp: {enabled, config_file}`: the package-relative path
     * of the file `pixell build` packs (config_file), which PAR reads for
     * its tools' descriptions and input schemas (docs/agent-yaml.md); NULL
     * when not declared or `enabled: false`. */
    char *mcp_config_file;

    /* `rest`, `a2a`, `ui` present? (recorded and listed, not served) */
    int has_rest, has_a2a, has_ui;

    /* Non-fatal findings ("agent.yaml: foo: unknown top-level key, ignored"),
     * shown by `par inspect` and returned by a deploy. */
    par_strlist_t warnings;
} par_manifest_t;

/*
 * Parses and validates agent.yaml bytes (strictness rules: docs/agent-yaml.md). On success returns
 * PAR_OK and *out is a new manifest (free with par_manifest_free). On failure returns
 * PAR_E_INVALID_PACKAGE and appends to `errors` one line per problem, each
 * naming the file and field path, e.g.
 *   "agent.yaml: metadata.sub_agents[2].name: must match ^[a-z][a-z0-9-]*$"
 * All problems are reported, not just the first. `errors` may be NULL.
 */
int par_manifest_parse(const char *yaml, size_t len, par_manifest_t **out, par_buf_t *errors);

void par_manifest_free(par_manifest_t *m);

/* Returns 1 when `s` matches ^[a-z][a-z0-9-]*$ (and is at most PAR_ID_PART_MAX bytes). */
int par_manifest_valid_name(const char *s, size_t len);

/* Returns 1 when `s` is a semantic version (MAJOR.MINOR.PATCH[-pre][+build]). */
int par_manifest_valid_semver(const char *s, size_t len);

/* 1 when the package's top-level `capabilities` list holds `cap` ("network"). */
int par_manifest_has_capability(const par_manifest_t *m, const char *cap);

/* Finds an export by name ("" = main). NULL when absent. */
const par_export_t *par_manifest_export(const par_manifest_t *m, const char *name);

#endif
