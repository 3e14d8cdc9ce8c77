/*
 * libFuzzer harness for auth/jwt.c: bearer tokens are the first thing an
 * unauthenticated client controls. Parses every input as a compact JWS, then
 * checks its claims; verifies the signature against the RFC 7515 A.3 P-256
 * key when the header says ES256 (the other algorithms take the same path).
 *
 *   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DPAR_FUZZ=ON
 *   cmake --build build-fuzz --target fuzz_jwt && build-fuzz/fuzz/fuzz_jwt fuzz/corpus/jwt
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auth/jwks.h"
#include "auth/jwt.h"

static par_jwks_t *g_keys;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_keys == NULL) {
        static const char jwks[] = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"k\","
                                   "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                                   "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";
        par_jwks_global_init();
        if (par_jwks_parse(jwks, strlen(jwks), &g_keys, NULL) != 0)
            return 0;
    }
    par_jwt_policy_t pol = {"https://issuer.example", "par", (1u << PAR_JWT_ALG_COUNT) - 1, 60, 0};
    par_jwt_t j;
    par_auth_fail_t f;
    if (par_jwt_parse((const char *)data, size, &pol, &j, &f) != 0)
        return 0;
    size_t pos = 0;
    const par_jwk_t *k = par_jwks_next(g_keys, j.kid, j.alg, &pos);
    if (k)
        par_jwt_verify(&j, k->pkey, k->key_class, &f);
    par_jwt_check_claims(&j, &pol, 1700000000, &f);
    par_jwt_free(&j);
    return 0;
}
