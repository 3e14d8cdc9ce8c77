/* Unit tests for http/listener.c: listen addresses, refusing an address in
 * use, SO_REUSEPORT only on request, and shedding at the descriptor limit. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include <cmocka.h>

#include "http/listener.h"

static int port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void test_parse(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t sl;
    assert_int_equal(par__http_listen_parse("127.0.0.1:8080", &ss, &sl), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8080);
    assert_int_equal(par__http_listen_parse("[::1]:9090", &ss, &sl), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(par__http_listen_parse(":7070", &ss, &sl), 0);
    assert_int_equal(par__http_listen_parse("8081", &ss, &sl), 0);
    assert_int_equal(par__http_listen_parse("localhost:80", &ss, &sl), -1);
    assert_int_equal(par__http_listen_parse("1.2.3.4:http", &ss, &sl), -1);
    /* a port beyond 65535 is refused, not wrapped to its low 16 bits */
    assert_int_equal(par__http_listen_parse("127.0.0.1:99999", &ss, &sl), -1);
    assert_int_equal(par__http_listen_parse("127.0.0.1:65536", &ss, &sl), -1);
    assert_int_equal(par__http_listen_parse("127.0.0.1:65535", &ss, &sl), 0);
    assert_int_equal(par__http_listen_parse("127.0.0.1:", &ss, &sl), -1);
    assert_int_equal(par__http_listen_parse("[::1]x", &ss, &sl), -1);
}

static void test_address_in_use(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t sl;
    char why[200], name[64];
    assert_int_equal(par__http_listen_parse("127.0.0.1:0", &ss, &sl), 0);
    int a = par__http_listen_open(&ss, sl, 0, "127.0.0.1:0", why, sizeof(why));
    assert_true(a >= 0);
    int port = port_of(a);
    snprintf(name, sizeof(name), "127.0.0.1:%d", port);
    assert_int_equal(par__http_listen_parse(name, &ss, &sl), 0);
    assert_int_equal(par__http_listen_open(&ss, sl, 0, name, why, sizeof(why)), -1);
    char want[100];
    snprintf(want, sizeof(want), "%s is already in use", name);
    assert_string_equal(why, want);
    /* asking for SO_REUSEPORT does not let a second listener in beside one that did not */
    assert_int_equal(par__http_listen_open(&ss, sl, 1, name, why, sizeof(why)), -1);
    close(a);
    /* both asking: both bind */
    int b = par__http_listen_open(&ss, sl, 1, name, why, sizeof(why));
    int c = par__http_listen_open(&ss, sl, 1, name, why, sizeof(why));
    assert_true(b >= 0 && c >= 0);
    close(b);
    close(c);
}

static void test_shed(void **state)
{
    (void)state;
    par__http_nofile_init();
    struct sockaddr_storage ss;
    socklen_t sl;
    char why[200];
    assert_int_equal(par__http_listen_parse("127.0.0.1:0", &ss, &sl), 0);
    int l = par__http_listen_open(&ss, sl, 0, "127.0.0.1:0", why, sizeof(why));
    assert_true(l >= 0);
    socklen_t al = sizeof(ss);
    getsockname(l, (struct sockaddr *)&ss, &al);
    int cl = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(cl, (struct sockaddr *)&ss, al), 0);
    assert_int_equal(par__http_shed(l, EAGAIN, 4), 0); /* not the descriptor limit */
    unsigned long before = par__http_shed_count();
    assert_int_equal(par__http_shed(l, EMFILE, 4), 1);
    assert_int_equal(par__http_shed_count(), before + 1);
    char buf[4];
    assert_int_equal(recv(cl, buf, sizeof(buf), 0), 0); /* closed by the server at once */
    close(cl);
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_parse),
                                       cmocka_unit_test(test_address_in_use),
                                       cmocka_unit_test(test_shed)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
