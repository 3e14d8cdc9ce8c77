/*
 * fuzz/fuzz_manifest.c — libFuzzer harness for the manifest parser
 * (par_manifest_parse): agent.yaml is the first file of a package PAR reads,
 * at deploy and at every start for the packages folder, so a crash here is a
 * boot loop (issue: libfyaml's `? p ] x:\t|`).
 *
 * Checks: a refusal names at least one problem, each line starting with
 * "agent.yaml"; an accepted manifest has a valid name and semver package
 * version, and its exports are well formed (a name, an entrypoint, at most
 * one main export, found again by name). Written against the header only: the
 * YAML library underneath may change.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "par/par.h"
#include "pkg/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_manifest(const par_manifest_t *m)
{
    FUZZ_CHECK(m->name && par_manifest_valid_name(m->name, strlen(m->name)), "name");
    FUZZ_CHECK(m->package_version &&
                   par_manifest_valid_semver(m->package_version, strlen(m->package_version)),
               "version");
    FUZZ_CHECK(m->format_version != NULL && m->runtime != NULL, "defaults");
    size_t mains = 0;
    for (size_t i = 0; i < m->export_count; i++) {
        const par_export_t *e = &m->exports[i];
        FUZZ_CHECK(e->name && e->entrypoint && e->entrypoint[0], "export %zu", i);
        mains += e->name[0] == '\0';
        FUZZ_CHECK(par_manifest_export(m, e->name) != NULL, "export '%s' not found", e->name);
    }
    FUZZ_CHECK(mains <= 1, "%zu main exports", mains);
    for (size_t i = 0; i < m->environment_count; i++)
        FUZZ_CHECK(m->environment[i].key && m->environment[i].value, "environment %zu", i);
    par_manifest_has_capability(m, "network");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > PAR_MANIFEST_MAX_BYTES)
        return 0;
    char *yaml = malloc(size ? size : 1);
    if (yaml == NULL)
        return 0;
    memcpy(yaml, data, size);
    par_manifest_t *m = NULL;
    par_buf_t err;
    par_buf_init(&err, 0);
    int rc = par_manifest_parse(yaml, size, &m, &err);
    if (rc == PAR_OK) {
        FUZZ_CHECK(m != NULL, "PAR_OK without a manifest");
        check_manifest(m);
        par_manifest_free(m);
    } else {
        FUZZ_CHECK(rc == PAR_E_INVALID_PACKAGE, "status %d", rc);
        FUZZ_CHECK(err.len > 0 && strncmp(err.data, "agent.yaml", 10) == 0,
                   "refused without a reason: '%.*s'", (int)err.len, err.data ? err.data : "");
    }
    par_buf_free(&err);
    free(yaml);
    return 0;
}
