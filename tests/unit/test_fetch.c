/* Unit tests for registry/fetch.c and registry/cache.c: digests computed while
 * streaming equal one-shot digests, the size cap, S3 URL mapping, refused
 * schemes, and the cache's verified marker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include <par/par.h>

#include "pkg/archive.h"
#include "registry/cache.h"
#include "registry/fetch.h"
#include "util/fs.h"

static char g_dir[] = "/tmp/par-fetch-test-XXXXXX";

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void test_streamed_digests_match_one_shot(void **state)
{
    (void)state;
    /* 5 MiB + 7 bytes of pseudo-random data: many write callbacks */
    size_t len = (5u << 20) + 7;
    unsigned char *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)((i * 2654435761u) >> 13);
    char path[256], url[300];
    snprintf(path, sizeof(path), "%s/blob", g_dir);
    write_file(path, data, len);
    snprintf(url, sizeof(url), "file://%s", path);

    par_fetch_opts_t o;
    par_fetch_opts_init(&o);
    o.allow_file = 1;
    par_fetch_result_t r;
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_fetch(url, &o, &r, &err), PAR_OK);
    assert_int_equal(r.body.len, len);
    assert_memory_equal(r.body.data, data, len);

    char want[65];
    par_sha256_hex(data, len, want);
    assert_string_equal(r.sha256, want);
    uint8_t b2[64];
    crypto_generichash(b2, 64, data, len, NULL, 0);
    assert_memory_equal(r.blake2b, b2, 64);
    assert_int_equal(r.attempts, 1);
    par_fetch_result_free(&r);

    /* the cap is enforced while streaming */
    o.max_bytes = 1u << 20;
    par_buf_reset(&err);
    assert_int_equal(par_fetch(url, &o, &r, &err), PAR_E_TOO_LARGE);
    assert_non_null(strstr(err.data, "max_download_mb"));
    assert_int_equal(r.body.len, 0);
    par_fetch_result_free(&r);

    /* a missing file is not found, not retried */
    snprintf(url, sizeof(url), "file://%s/none", g_dir);
    par_buf_reset(&err);
    o.max_bytes = 1u << 20;
    int rc = par_fetch(url, &o, &r, &err);
    assert_true(rc == PAR_E_FETCH_FAILED || rc == PAR_E_NOT_FOUND);
    assert_int_equal(r.attempts, 1);
    par_fetch_result_free(&r);
    par_buf_free(&err);
    free(data);
}

static void test_refused_schemes(void **state)
{
    (void)state;
    par_fetch_opts_t o;
    par_fetch_opts_init(&o);
    par_fetch_result_t r;
    par_buf_t err;
    par_buf_init(&err, 0);
    const char *bad[] = {"http://127.0.0.1/x.apkg",
                         "ftp://h/x",
                         "file:///etc/passwd",
                         "gopher://h/",
                         "/local/path",
                         "s3://",
                         "s3://bucket",
                         "s3://Bad_Bucket/k"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        par_buf_reset(&err);
        assert_int_equal(par_fetch(bad[i], &o, &r, &err), PAR_E_INVALID_ARGUMENT);
        assert_true(err.len > 0);
        par_fetch_result_free(&r);
    }
    par_buf_free(&err);
}

/* A listener that accepts (the kernel does) and never answers. */
static int hung_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void *cancel_later(void *arg)
{
    usleep(300 * 1000);
    atomic_store((atomic_int *)arg, 1);
    return NULL;
}

/* A fetch hung on a server that never answers stops soon after `cancel` is
 * set, and is not retried. */
static void test_cancel_stops_a_hung_fetch(void **state)
{
    (void)state;
    int port, fd = hung_listener(&port);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/index.json", port);
    par_fetch_opts_t o;
    par_fetch_opts_init(&o);
    o.allow_http = 1;
    o.timeout_ms = 30000;
    o.retries = 3;
    atomic_int cancel = 0;
    o.cancel = &cancel;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_later, &cancel), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    par_fetch_result_t r;
    par_buf_t err;
    par_buf_init(&err, 0);
    assert_int_equal(par_fetch(url, &o, &r, &err), PAR_E_FETCH_FAILED);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_join(t, NULL);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s < 3.0); /* curl calls back at least once a second */
    assert_int_equal(r.attempts, 1);
    assert_true(err.len > 0);
    par_fetch_result_free(&r);
    par_buf_free(&err);
    close(fd);
}

static void s3(const char *in, const char *endpoint, int path_style, const char *region,
               const char *want)
{
    par_fetch_opts_t o;
    par_fetch_opts_init(&o);
    o.s3_endpoint = endpoint;
    o.s3_path_style = path_style;
    o.s3_region = region;
    par_buf_t out, err;
    par_buf_init(&out, 0);
    par_buf_init(&err, 0);
    assert_int_equal(par_fetch_s3_url(in, &o, &out, &err), PAR_OK);
    assert_string_equal(out.data, want);
    par_buf_free(&out);
    par_buf_free(&err);
}

static void test_s3_urls(void **state)
{
    (void)state;
    s3("s3://pkgs/a/b-1.0.0.apkg", NULL, 0, "eu-west-1",
       "https://pkgs.s3.eu-west-1.amazonaws.com/a/b-1.0.0.apkg");
    s3("s3://pkgs/a b+c.apkg", NULL, 1, NULL,
       "https://s3.us-east-1.amazonaws.com/pkgs/a%20b%2Bc.apkg");
    s3("s3://pkgs/k", "http://127.0.0.1:4568/", 1, NULL, "http://127.0.0.1:4568/pkgs/k");
    s3("s3://pkgs/k", "https://minio.example:9000", 0, NULL, "https://pkgs.minio.example:9000/k");
}

static void test_cache_marker_and_sweep(void **state)
{
    (void)state;
    char cache[256];
    snprintf(cache, sizeof(cache), "%s/cache", g_dir);
    assert_int_equal(mkdir(cache, 0755), 0);
    const char *d64 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    char p[512];
    /* an entry without its marker and an interrupted extraction */
    snprintf(p, sizeof(p), "%s/%s", cache, d64);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/.tmp-%s-x", cache, d64);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(par_cache_sweep(cache), 2);
    par_cache_info_t info;
    assert_int_equal(par_cache_lookup(cache, d64, &info), 0);

    /* a complete entry with its marker is found with what the marker says */
    snprintf(p, sizeof(p), "%s/%s", cache, d64);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/%s.complete", cache, d64);
    char m[600];
    snprintf(m, sizeof(m),
             "{\"sha256\":\"%s\",\"blake2b512\":\"%0128d\",\"bytes\":4096,\"signer\":"
             "\"B347E39077E4E59\"}",
             d64, 7);
    write_file(p, m, strlen(m));
    assert_int_equal(par_cache_sweep(cache), 0);
    assert_int_equal(par_cache_lookup(cache, d64, &info), 1);
    assert_true(info.has_blake2b);
    assert_int_equal(info.blake2b[63], 0x07);
    assert_string_equal(info.signer, "B347E39077E4E59");
    assert_int_equal(info.bytes, 4096);
    /* not a digest: never looked up */
    assert_int_equal(par_cache_lookup(cache, "../../etc", &info), 0);
}

int main(void)
{
    if (mkdtemp(g_dir) == NULL)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streamed_digests_match_one_shot),
        cmocka_unit_test(test_refused_schemes),
        cmocka_unit_test(test_cancel_stops_a_hung_fetch),
        cmocka_unit_test(test_s3_urls),
        cmocka_unit_test(test_cache_marker_and_sweep),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    par_fs_remove(g_dir, NULL);
    return rc;
}
