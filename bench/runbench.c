/*
 * par-runbench: the runs benchmark's client (bench/runs.py drives it).
 *
 *   par-runbench idle   HOST:PORT N HOLD_S PATH...   N streams over the PATHs (round robin),
 *                                                    "READY {…}" once each has its first
 *                                                    event, held HOLD_S, then "{…}"
 *   par-runbench conns  HOST:PORT N HOLD_S PATH...   the same with plain requests: N idle
 *                                                    keep-alive connections (the baseline)
 *   par-runbench fanout HOST:PORT C PATH              C streams of one run to its end: events
 *                                                    each, events/s per client and in total
 *   par-runbench ttfe   HOST:PORT N AGENT INPUT       N × (invoke, then runs/stream) on two
 *                                                    keep-alive connections, interleaved:
 *                                                    invoke latency vs time to run.started
 *                                                    and to the agent's first event
 *   par-runbench replay HOST:PORT R PATH [E]          R reads of a run's stream: to its end,
 *                                                    or its first E events (a live run)
 *
 * Prints JSON (one object per line). Single-threaded: epoll over non-blocking
 * sockets for the many-connection modes, blocking sockets for the latency
 * ones. It parses only what it measures: status line, chunked framing, and
 * each event's `event:` line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in g_addr;
static int g_keep; /* conns: a whole answer leaves its connection open (keep-alive) */
static char g_host[64];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void parse_addr(const char *hp)
{
    snprintf(g_host, sizeof(g_host), "%s", hp);
    char *colon = strrchr(g_host, ':');
    if (colon == NULL) {
        fprintf(stderr, "HOST:PORT expected, got %s\n", hp);
        exit(2);
    }
    *colon = 0;
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, g_host, &g_addr.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", g_host);
        exit(2);
    }
    *colon = ':';
}

static int connect_to(int nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&g_addr, sizeof(g_addr)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A request; `sse` asks for an event stream (Accept: text/event-stream). */
static int request(char *buf, size_t cap, const char *method, const char *path, const char *body,
                   int sse)
{
    size_t blen = body ? strlen(body) : 0;
    return snprintf(buf, cap,
                    "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\n\r\n%s",
                    method, path, g_host, sse ? "Accept: text/event-stream\r\n" : "", blen,
                    body ? body : "");
}

/* ---- a response parser: head, chunked body, SSE events -------------------------- */

enum { P_HEAD, P_SIZE, P_DATA, P_CRLF, P_DONE };

typedef struct parser {
    int state, status, chunked, close_after;
    size_t chunk_left;
    char line[128]; /* the current line (head or SSE), truncated */
    size_t line_len;
    int line_over;
    int is_event; /* the current event has an `event:` line */
    char type[32];
    long events;     /* events whole */
    long data;       /* of them: not the runtime's own (run.*) */
    int first_seen;  /* an event has completed */
    int agent_seen;  /* an agent event has completed */
    int ended;       /* the body ended (last chunk) or a run.* end event came */
    int end_event;   /* a run.completed/failed/cancelled/interrupted event came */
    size_t body_len; /* decoded body bytes, non-chunked: content-length left */
    long content_left;
} parser_t;

static void p_reset(parser_t *p)
{
    memset(p, 0, sizeof(*p));
    p->content_left = -1;
}

static void sse_line(parser_t *p)
{
    if (p->line_len == 0) {
        if (p->is_event) {
            p->events++;
            p->first_seen = 1;
            if (strncmp(p->type, "run.", 4) != 0) {
                p->data++;
                p->agent_seen = 1;
            } else if (strcmp(p->type, "run.started") != 0) {
                p->end_event = 1;
            }
        }
        p->is_event = 0;
        p->type[0] = 0;
        return;
    }
    if (p->line[0] == ':')
        return;
    if (strncmp(p->line, "id:", 3) == 0)
        p->is_event = 1;
    else if (strncmp(p->line, "event: ", 7) == 0) {
        snprintf(p->type, sizeof(p->type), "%s", p->line + 7);
        p->is_event = 1;
    } else if (strncmp(p->line, "data:", 5) == 0) {
        p->is_event = 1;
        if (p->type[0] == 0)
            snprintf(p->type, sizeof(p->type), "data");
    }
}

static void head_line(parser_t *p)
{
    if (p->status == 0) {
        p->status = atoi(p->line + 9); /* "HTTP/1.1 200" */
        return;
    }
    if (p->line_len == 0) {
        p->state = p->chunked ? P_SIZE : P_DATA;
        if (!p->chunked && p->content_left == 0)
            p->state = P_DONE, p->ended = 1;
        return;
    }
    if (strncasecmp(p->line, "transfer-encoding:", 18) == 0 && strcasestr(p->line, "chunked"))
        p->chunked = 1;
    if (strncasecmp(p->line, "connection:", 11) == 0 && strcasestr(p->line, "close"))
        p->close_after = 1;
    if (strncasecmp(p->line, "content-length:", 15) == 0)
        p->content_left = atol(p->line + 15);
}

/* Feeds body or head bytes a line at a time ("\r\n" or "\n" ends a line). */
static void feed_lines(parser_t *p, const char *s, size_t n, int head)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\n') {
            if (p->line_len > 0 && p->line[p->line_len - 1] == '\r')
                p->line_len--;
            p->line[p->line_len] = 0;
            head ? head_line(p) : sse_line(p);
            p->line_len = 0;
            if (head && p->state != P_HEAD) {
                return; /* caller continues with the body after this byte */
            }
        } else if (p->line_len < sizeof(p->line) - 1) {
            p->line[p->line_len++] = c;
        }
    }
}

/* Consumes n bytes; returns when done or out of bytes. */
static void p_feed(parser_t *p, const char *s, size_t n)
{
    while (n > 0 && p->state != P_DONE) {
        if (p->state == P_HEAD) {
            const char *nl = memchr(s, '\n', n);
            size_t take = nl ? (size_t)(nl - s) + 1 : n;
            feed_lines(p, s, take, 1);
            s += take, n -= take;
        } else if (p->state == P_SIZE) {
            const char *nl = memchr(s, '\n', n);
            size_t take = nl ? (size_t)(nl - s) + 1 : n;
            for (size_t i = 0; i < take; i++) {
                char c = s[i];
                int d = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
                if (d >= 0 && !p->line_over)
                    p->chunk_left = p->chunk_left * 16 + (size_t)d;
                else if (c != '\n')
                    p->line_over = 1; /* extensions, CR */
            }
            s += take, n -= take;
            if (nl) {
                p->line_over = 0;
                if (p->chunk_left == 0)
                    p->state = P_DONE, p->ended = 1;
                else
                    p->state = P_DATA;
            }
        } else if (p->state == P_DATA) {
            size_t take = n;
            if (p->chunked && take > p->chunk_left)
                take = p->chunk_left;
            if (!p->chunked && p->content_left >= 0 && (long)take > p->content_left)
                take = (size_t)p->content_left;
            feed_lines(p, s, take, 0);
            p->body_len += take;
            s += take, n -= take;
            if (p->chunked) {
                p->chunk_left -= take;
                if (p->chunk_left == 0)
                    p->state = P_CRLF;
            } else if (p->content_left >= 0) {
                p->content_left -= (long)take;
                if (p->content_left == 0)
                    p->state = P_DONE, p->ended = 1;
            }
        } else if (p->state == P_CRLF) {
            if (*s == '\n')
                p->state = P_SIZE;
            s++, n--;
        }
    }
}

/* ---- many connections: idle and fan-out -------------------------------------------- */

typedef struct conn {
    int fd;
    parser_t p;
    double t_first_data, t_end;
    int counted_ready;
    char *req;
    size_t req_len, req_off;
} conn_t;

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int conn_open(int ep, conn_t *c, const char *path)
{
    static char buf[1024];
    int len = request(buf, sizeof(buf), "GET", path, NULL, 1);
    c->req = strdup(buf);
    if (c->req == NULL)
        die("strdup");
    c->req_len = (size_t)len;
    c->req_off = 0;
    p_reset(&c->p);
    c->fd = connect_to(1);
    if (c->fd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl");
    return 0;
}

/* One readiness event of `c`; returns 1 when its stream ended (or failed). */
static int conn_io(int ep, conn_t *c, uint32_t events)
{
    if ((events & EPOLLOUT) && c->req_off < c->req_len) {
        ssize_t w = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);
        if (w > 0)
            c->req_off += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            return 1;
        if (c->req_off == c->req_len) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return 0;
    static char buf[65536];
    for (;;) {
        ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
        if (r > 0) {
            int had = c->p.agent_seen;
            p_feed(&c->p, buf, (size_t)r);
            if (!had && c->p.agent_seen)
                c->t_first_data = now_s();
            if (c->p.end_event || (c->p.ended && !g_keep))
                return 1;
            continue;
        }
        if (r < 0 && errno == EAGAIN)
            return 0;
        return 1;
    }
}

static void conn_close(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->t_end = now_s();
    free(c->req);
    c->req = NULL;
}

static int mode_idle(int n, int hold_s, char **paths, int npaths)
{
    raise_nofile();
    int ep = epoll_create1(0);
    conn_t *cs = calloc((size_t)n, sizeof(*cs));
    struct epoll_event *evs = malloc(sizeof(*evs) * 1024);
    if (ep < 0 || cs == NULL || evs == NULL)
        die("setup");
    double t0 = now_s();
    int failed = 0, ready = 0, closed = 0, opened = 0;
    /* open in waves of 256 so the listener's backlog keeps up */
    while (ready + failed + closed < n && now_s() - t0 < 120) {
        while (opened < n && opened - ready - failed - closed < 256) {
            if (conn_open(ep, &cs[opened], paths[opened % npaths]) != 0) {
                cs[opened].fd = -1;
                failed++;
            }
            opened++;
        }
        int k = epoll_wait(ep, evs, 1024, 100);
        for (int i = 0; i < k; i++) {
            conn_t *c = evs[i].data.ptr;
            int done = conn_io(ep, c, evs[i].events);
            if (!c->counted_ready && c->p.status == 200 &&
                (c->p.first_seen || (g_keep && c->p.ended))) {
                c->counted_ready = 1;
                ready++;
            }
            if (done) {
                if (!c->counted_ready)
                    failed++;
                else
                    ready--, closed++;
                conn_close(c);
            }
        }
    }
    double t_ready = now_s() - t0;
    printf("READY {\"streams\":%d,\"failed\":%d,\"closed\":%d,\"connect_s\":%.3f}\n", ready, failed,
           closed, t_ready);
    fflush(stdout);
    double until = now_s() + hold_s;
    while (now_s() < until) {
        int k = epoll_wait(ep, evs, 1024, 200);
        for (int i = 0; i < k; i++) {
            conn_t *c = evs[i].data.ptr;
            if (conn_io(ep, c, evs[i].events)) {
                closed++;
                conn_close(c);
            }
        }
    }
    int live = 0;
    for (int i = 0; i < opened; i++)
        if (cs[i].fd >= 0) {
            live++;
            conn_close(&cs[i]);
        }
    printf("{\"streams\":%d,\"failed\":%d,\"closed_early\":%d,\"live_at_end\":%d,"
           "\"connect_s\":%.3f}\n",
           ready, failed, closed, live, t_ready);
    return failed || closed ? 1 : 0;
}

static int mode_fanout(int n, const char *path)
{
    raise_nofile();
    int ep = epoll_create1(0);
    conn_t *cs = calloc((size_t)n, sizeof(*cs));
    struct epoll_event *evs = malloc(sizeof(*evs) * 1024);
    if (ep < 0 || cs == NULL || evs == NULL)
        die("setup");
    for (int i = 0; i < n; i++)
        if (conn_open(ep, &cs[i], path) != 0)
            die("connect");
    int left = n;
    double t0 = now_s();
    while (left > 0 && now_s() - t0 < 600) {
        int k = epoll_wait(ep, evs, 1024, 1000);
        for (int i = 0; i < k; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd >= 0 && conn_io(ep, c, evs[i].events)) {
                conn_close(c);
                left--;
            }
        }
    }
    double first = 1e18, last = 0, sum_rate = 0;
    long total = 0, min_ev = -1;
    int complete = 0;
    for (int i = 0; i < n; i++) {
        conn_t *c = &cs[i];
        if (c->fd >= 0)
            conn_close(c);
        total += c->p.data;
        if (min_ev < 0 || c->p.data < min_ev)
            min_ev = c->p.data;
        complete += c->p.end_event;
        if (c->t_first_data > 0) {
            first = c->t_first_data < first ? c->t_first_data : first;
            last = c->t_end > last ? c->t_end : last;
            if (c->t_end > c->t_first_data)
                sum_rate += (double)c->p.data / (c->t_end - c->t_first_data);
        }
    }
    double span = last > first ? last - first : 0;
    printf("{\"clients\":%d,\"complete\":%d,\"events_per_client_min\":%ld,\"events_total\":%ld,"
           "\"seconds\":%.3f,\"events_per_s_total\":%.0f,\"events_per_s_per_client\":%.0f}\n",
           n, complete, min_ev, total, span, span > 0 ? (double)total / span : 0,
           n ? sum_rate / n : 0);
    return complete == n ? 0 : 1;
}

/* ---- one connection at a time: latency and replay ------------------------------------ */

typedef struct blk {
    int fd;
} blk_t;

static int blk_connect(blk_t *b)
{
    if (b->fd > 0)
        return 0;
    b->fd = connect_to(0);
    return b->fd < 0 ? -1 : 0;
}

/* Sends a request and reads its answer (with stop_after > 0: that many events
 * of it) on keep-alive connection `b`; times to
 * the first event and the first agent event in *t_first, *t_agent (s after
 * the send, 0 if none) and the whole answer in *t_all. The parser's state
 * after in *p. -1 on a connection failure. */
static int blk_exchange(blk_t *b, const char *method, const char *path, const char *body, int sse,
                        long stop_after, parser_t *p, double *t_first, double *t_agent,
                        double *t_all)
{
    static char req[4096], buf[65536];
    if (blk_connect(b) != 0)
        return -1;
    int len = request(req, sizeof(req), method, path, body, sse);
    p_reset(p);
    *t_first = *t_agent = 0;
    double t0 = now_s();
    if (send(b->fd, req, (size_t)len, MSG_NOSIGNAL) != len)
        return -1;
    while (!p->ended && !(stop_after > 0 && p->events >= stop_after)) {
        ssize_t r = recv(b->fd, buf, sizeof(buf), 0);
        if (r <= 0) {
            close(b->fd);
            b->fd = -1;
            return p->status && !p->chunked && p->content_left < 0 ? 0 : -1;
        }
        int had_first = p->first_seen, had_agent = p->agent_seen;
        p_feed(p, buf, (size_t)r);
        if (!had_first && p->first_seen)
            *t_first = now_s() - t0;
        if (!had_agent && p->agent_seen)
            *t_agent = now_s() - t0;
    }
    *t_all = now_s() - t0;
    if (p->close_after || !p->ended) { /* a stream that goes on is left */
        close(b->fd);
        b->fd = -1;
    }
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_pct(const char *name, double *v, int n, int last)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    printf("\"%s\":{\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}%s", name, v[n / 2] * 1e3,
           v[(n * 99) / 100] * 1e3, v[n - 1] * 1e3, last ? "" : ",");
}

static int mode_ttfe(int n, const char *agent, const char *input)
{
    char ipath[512], spath[512], body[1024];
    snprintf(ipath, sizeof(ipath), "/agents/%s/invoke", agent);
    snprintf(spath, sizeof(spath), "/agents/%s/runs/stream", agent);
    snprintf(body, sizeof(body), "{\"input\":%s}", input);
    double *inv = calloc((size_t)n, sizeof(double)), *first = calloc((size_t)n, sizeof(double)),
           *agentev = calloc((size_t)n, sizeof(double)), *whole = calloc((size_t)n, sizeof(double));
    if (!inv || !first || !agentev || !whole)
        die("calloc");
    blk_t a = {.fd = -1}, s = {.fd = -1};
    parser_t p;
    double f, g, t;
    int warm = n / 10 + 10;
    for (int i = -warm; i < n; i++) {
        /* invoke: a plain request (no Accept: text/event-stream) */
        double ti;
        if (blk_exchange(&a, "POST", ipath, body, 0, 0, &p, &f, &g, &ti) != 0 || p.status != 200) {
            fprintf(stderr, "invoke failed (status %d)\n", p.status);
            return 1;
        }
        if (blk_exchange(&s, "POST", spath, body, 1, 0, &p, &f, &g, &t) != 0 || p.status != 200 ||
            !p.end_event) {
            fprintf(stderr, "runs/stream failed (status %d)\n", p.status);
            return 1;
        }
        if (i >= 0)
            inv[i] = ti, first[i] = f, agentev[i] = g, whole[i] = t;
    }
    printf("{\"n\":%d,", n);
    print_pct("invoke", inv, n, 0);
    print_pct("run_started", first, n, 0);
    print_pct("first_agent_event", agentev, n, 0);
    print_pct("stream_whole", whole, n, 1);
    printf("}\n");
    return 0;
}

static int mode_replay(int n, const char *path, long stop_after)
{
    double *v = calloc((size_t)n, sizeof(double));
    if (v == NULL)
        die("calloc");
    blk_t b = {.fd = -1};
    parser_t p;
    double f, g, t;
    long events = -1;
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        if (blk_exchange(&b, "GET", path, NULL, 1, stop_after, &p, &f, &g, &t) != 0 ||
            p.status != 200) {
            fprintf(stderr, "replay failed (status %d)\n", p.status);
            return 1;
        }
        if (events >= 0 && p.events != events) {
            fprintf(stderr, "replay %d gave %ld events, not %ld\n", i, p.events, events);
            return 1;
        }
        events = p.events, bytes = p.body_len;
        v[i] = t;
    }
    qsort(v, (size_t)n, sizeof(*v), cmp_d);
    printf("{\"reads\":%d,\"events\":%ld,\"bytes\":%zu,\"median_ms\":%.3f,\"min_ms\":%.3f,"
           "\"max_ms\":%.3f,\"us_per_event\":%.3f,\"events_per_s\":%.0f}\n",
           n, events, bytes, v[n / 2] * 1e3, v[0] * 1e3, v[n - 1] * 1e3,
           events > 0 ? v[n / 2] * 1e6 / (double)events : 0,
           v[n / 2] > 0 ? (double)events / v[n / 2] : 0);
    return 0;
}

int main(int argc, char **argv)
{
    g_keep = argc >= 6 && strcmp(argv[1], "conns") == 0;
    if (argc >= 6 && (g_keep || strcmp(argv[1], "idle") == 0)) {
        parse_addr(argv[2]);
        return mode_idle(atoi(argv[3]), atoi(argv[4]), argv + 5, argc - 5);
    }
    if (argc == 5 && strcmp(argv[1], "fanout") == 0) {
        parse_addr(argv[2]);
        return mode_fanout(atoi(argv[3]), argv[4]);
    }
    if (argc == 6 && strcmp(argv[1], "ttfe") == 0) {
        parse_addr(argv[2]);
        return mode_ttfe(atoi(argv[3]), argv[4], argv[5]);
    }
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "replay") == 0) {
        parse_addr(argv[2]);
        return mode_replay(atoi(argv[3]), argv[4], argc == 6 ? atol(argv[5]) : 0);
    }
    fprintf(stderr, "usage: par-runbench idle|conns HOST:PORT N HOLD_S PATH...\n"
                    "       par-runbench fanout HOST:PORT CLIENTS PATH\n"
                    "       par-runbench ttfe HOST:PORT N AGENT INPUT_JSON\n"
                    "       par-runbench replay HOST:PORT READS PATH [EVENTS]\n");
    return 2;
}
