/* Load generator for `bench/run.sh`: one thread, epoll, so that on 2 cores the
 * server (not the generator) is the bottleneck; `netservd bench` (tokio)
 * saturates its own core before a C server does. Not part of the product.
 *
 * Modes (every echo is verified byte for byte; every run is bounded by time):
 *   c_gen tcp   PORT SIZE CONNS DEPTH DURATION_MS WARMUP_MS
 *       CONNS connections to 127.0.0.1:PORT, DEPTH frames (4-byte big-endian
 *       length + SIZE bytes) in flight on each; every echo answered by a new frame.
 *   c_gen udp   PORT SIZE SOCKETS WINDOW DURATION_MS WARMUP_MS
 *       SOCKETS connected UDP sockets, WINDOW datagrams in flight on each, each
 *       carrying a sockperf header (so `sockperf server` answers too); a request
 *       unanswered for 200 ms is counted lost and replaced.
 *   c_gen short PORT SIZE CONCURRENCY DURATION_MS WARMUP_MS
 *       CONCURRENCY parallel loops of connect, one frame, its echo, close
 *       (client first); source addresses rotate over 127.0.0.2-127.0.0.254 so
 *       TIME_WAIT never exhausts the ephemeral ports.
 *
 * Prints one JSON object with the fields bench/bench.py reads from
 * `netservd bench --json` (msgs_per_s, total_replies, latency_us, ...) plus
 * gen_cpu_s (this process's user+system CPU over the whole run, warm-up
 * included, as the server's CPU is measured) and gen_cpu_share (that over the
 * run's wall time: 1.0 = the generator's core is full).
 * Timing: one clock read per epoll round, not per message.
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
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF (256 * 1024)
#define HIST_US 100000 /* 1 us buckets up to 100 ms; slower goes into the last */
#define LOSS_NS 200000000LL
#define SOCKPERF_HEADER 14

static uint64_t hist[HIST_US + 1];
static uint64_t measured, total_replies, mismatches, lost, errors_n;
static uint64_t max_ns;
static char first_error[256];
static int64_t now_ns, warm_end, end_ns;
static unsigned char *tmpl; /* payload template; the first min(8, size) bytes carry the sequence */
static size_t size, seq_bytes;

static int64_t mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static double cpu_s(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static void error(const char *what) {
    errors_n++;
    if (!first_error[0]) snprintf(first_error, sizeof first_error, "%s: %s", what, strerror(errno));
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void record(int64_t sent_at) {
    total_replies++;
    if (now_ns < warm_end || now_ns >= end_ns) return;
    measured++;
    int64_t d = now_ns - sent_at;
    if (d < 0) d = 0;
    if ((uint64_t)d > max_ns) max_ns = d;
    uint64_t us = d / 1000;
    hist[us > HIST_US ? HIST_US : us]++;
}

static double quantile(double q) {
    uint64_t want = (uint64_t)(q * measured), seen = 0;
    for (size_t i = 0; i <= HIST_US; i++) {
        seen += hist[i];
        if (seen > want || (seen == measured && seen)) return i + 0.5;
    }
    return 0;
}

static void make_template(int sockperf) {
    tmpl = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++) tmpl[i] = (unsigned char)(i * 31 + 7);
    seq_bytes = size < 8 ? size : 8;
    if (sockperf && size >= SOCKPERF_HEADER) {
        tmpl[8] = 0x00; tmpl[9] = 0x03; /* client | pong request */
        tmpl[10] = size >> 24; tmpl[11] = size >> 16; tmpl[12] = size >> 8; tmpl[13] = size;
    }
}

static void put_seq(unsigned char *p, uint64_t seq) {
    for (size_t i = 0; i < seq_bytes; i++) p[i] = seq >> (8 * (seq_bytes - 1 - i));
}

static uint64_t get_seq(const unsigned char *p) {
    uint64_t s = 0;
    for (size_t i = 0; i < seq_bytes; i++) s = (s << 8) | p[i];
    return s;
}

static uint64_t seq_mask(void) { return seq_bytes >= 8 ? UINT64_MAX : ((1ULL << (8 * seq_bytes)) - 1); }

/* Does `p` (size bytes) echo message `seq`? A sockperf server may clear the client flag. */
static int matches(const unsigned char *p, uint64_t seq, int sockperf) {
    if (get_seq(p) != (seq & seq_mask())) return 0;
    if (sockperf && size >= SOCKPERF_HEADER)
        return memcmp(p + 8, tmpl + 8, 1) == 0 && (p[9] | 1) == (tmpl[9] | 1) &&
               memcmp(p + 10, tmpl + 10, size - 10) == 0;
    return memcmp(p + seq_bytes, tmpl + seq_bytes, size - seq_bytes) == 0;
}

static struct sockaddr_in target(int port, const char *src) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, src, &a.sin_addr);
    return a;
}

static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* ---------------------------------------------------------------- TCP */

struct tconn {
    int fd;
    uint64_t next_seq, expect_seq;
    int64_t *sent_at; /* ring of DEPTH send times, in order */
    size_t head, depth;
    unsigned char *rbuf;
    size_t rlen;
    unsigned char *wbuf;
    size_t wlen, woff, wcap;
    int want_out;
};

static void tcp_queue(struct tconn *c, size_t n) {
    size_t frame = 4 + size;
    if (c->wlen + n * frame > c->wcap) {
        c->wcap = (c->wlen + n * frame) * 2;
        c->wbuf = realloc(c->wbuf, c->wcap);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = c->wbuf + c->wlen;
        p[0] = size >> 24; p[1] = size >> 16; p[2] = size >> 8; p[3] = size;
        memcpy(p + 4, tmpl, size);
        put_seq(p + 4, c->next_seq++);
        c->sent_at[(c->head + (c->next_seq - 1 - c->expect_seq)) % c->depth] = now_ns;
        c->wlen += frame;
    }
}

static int tcp_flush(struct tconn *c, int ep) {
    while (c->woff < c->wlen) {
        ssize_t n = write(c->fd, c->wbuf + c->woff, c->wlen - c->woff);
        if (n > 0) { c->woff += n; continue; }
        if (n < 0 && errno == EAGAIN) break;
        error("write");
        return -1;
    }
    if (c->woff == c->wlen) c->woff = c->wlen = 0;
    int want = c->wlen > 0;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
    return 0;
}

static int tcp_read(struct tconn *c) {
    size_t frame = 4 + size, got = 0;
    for (;;) {
        ssize_t n = read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
        if (n == 0) { errno = ECONNRESET; error("server closed"); return -1; }
        if (n < 0) {
            if (errno == EAGAIN) break;
            error("read");
            return -1;
        }
        c->rlen += n;
        size_t at = 0;
        while (c->rlen - at >= frame) {
            unsigned char *p = c->rbuf + at;
            uint32_t len = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
            if (len != size || !matches(p + 4, c->expect_seq, 0)) mismatches++;
            record(c->sent_at[c->head]);
            c->head = (c->head + 1) % c->depth;
            c->expect_seq++;
            at += frame;
            got++;
        }
        memmove(c->rbuf, c->rbuf + at, c->rlen - at);
        c->rlen -= at;
        if ((size_t)n < RBUF - c->rlen) break; /* short read: the socket is empty, skip the EAGAIN read */
    }
    return (int)got;
}

static void run_tcp(int port, int conns, int depth) {
    if (4 + size > RBUF) { fprintf(stderr, "SIZE too large\n"); exit(2); }
    int ep = epoll_create1(0);
    struct tconn *cs = calloc(conns, sizeof *cs);
    struct sockaddr_in a = target(port, "127.0.0.1");
    now_ns = mono();
    for (int i = 0; i < conns; i++) {
        struct tconn *c = &cs[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
        nonblock(c->fd);
        c->depth = depth;
        c->sent_at = calloc(depth, sizeof(int64_t));
        c->rbuf = malloc(RBUF);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        tcp_queue(c, depth);
        tcp_flush(c, ep);
    }
    struct epoll_event evs[256];
    while ((now_ns = mono()) < end_ns) {
        int n = epoll_wait(ep, evs, 256, 100);
        now_ns = mono();
        for (int i = 0; i < n; i++) {
            struct tconn *c = evs[i].data.ptr;
            if (c->fd < 0) continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                int got = tcp_read(c);
                if (got < 0) { close(c->fd); c->fd = -1; continue; }
                if (got) tcp_queue(c, got);
            }
            if (tcp_flush(c, ep) < 0) { close(c->fd); c->fd = -1; }
        }
    }
}

/* ---------------------------------------------------------------- UDP */

struct slot {
    uint64_t seq;
    int64_t sent_at;
    int busy;
};

struct usock {
    int fd;
    uint64_t next_seq;
    struct slot *slots; /* 4 x WINDOW, indexed by seq */
    size_t nslots;
    int inflight;
};

static void udp_send(struct usock *u, unsigned char *out) {
    struct slot *s = &u->slots[u->next_seq % u->nslots];
    if (s->busy) { lost++; u->inflight--; } /* its slot came round again: long gone */
    memcpy(out, tmpl, size);
    put_seq(out, u->next_seq);
    if (send(u->fd, out, size, 0) < 0 && errno != EAGAIN && errno != ECONNREFUSED) error("send");
    s->seq = u->next_seq++;
    s->sent_at = now_ns;
    s->busy = 1;
    u->inflight++;
}

static void run_udp(int port, int socks, int window) {
    int ep = epoll_create1(0);
    struct usock *us = calloc(socks, sizeof *us);
    struct sockaddr_in a = target(port, "127.0.0.1");
    unsigned char *out = malloc(size + 1), *in = malloc(size + 2);
    now_ns = mono();
    for (int i = 0; i < socks; i++) {
        struct usock *u = &us[i];
        u->fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (connect(u->fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
        nonblock(u->fd);
        u->nslots = 4 * (size_t)window;
        u->slots = calloc(u->nslots, sizeof(struct slot));
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = u};
        epoll_ctl(ep, EPOLL_CTL_ADD, u->fd, &ev);
        for (int k = 0; k < window; k++) udp_send(u, out);
    }
    struct epoll_event evs[64];
    int64_t next_scan = now_ns + LOSS_NS / 2;
    while ((now_ns = mono()) < end_ns) {
        int n = epoll_wait(ep, evs, 64, 50);
        now_ns = mono();
        for (int i = 0; i < n; i++) {
            struct usock *u = evs[i].data.ptr;
            for (;;) {
                ssize_t r = recv(u->fd, in, size + 1, 0);
                if (r < 0) {
                    if (errno != EAGAIN) error("recv");
                    break;
                }
                /* A reply to a request sent in this same round must not read as 0 us. */
                now_ns = mono();
                uint64_t seq = r >= (ssize_t)seq_bytes ? get_seq(in) : 0;
                struct slot *s = &u->slots[seq % u->nslots];
                if (!s->busy || (s->seq & seq_mask()) != seq) continue; /* late: already counted lost */
                if ((size_t)r != size || !matches(in, s->seq, 1)) mismatches++;
                record(s->sent_at);
                s->busy = 0;
                u->inflight--;
                udp_send(u, out);
            }
        }
        if (now_ns >= next_scan) { /* requests unanswered for LOSS_NS: lost, replaced */
            for (int i = 0; i < socks; i++)
                for (size_t k = 0; k < us[i].nslots; k++) {
                    struct slot *s = &us[i].slots[k];
                    if (s->busy && now_ns - s->sent_at > LOSS_NS) {
                        s->busy = 0; us[i].inflight--; lost++;
                        udp_send(&us[i], out);
                    }
                }
            next_scan = now_ns + LOSS_NS / 2;
        }
    }
}

/* ---------------------------------------------------------------- short connections */

struct sconn {
    int fd;
    int64_t started;
    size_t sent, got;
    unsigned char buf[4 + 65536];
};

static int src_host = 2;

static void short_start(struct sconn *c, int ep, struct sockaddr_in *a) {
    char src[32];
    snprintf(src, sizeof src, "127.0.0.%d", src_host);
    src_host = src_host >= 254 ? 2 : src_host + 1;
    struct sockaddr_in s = target(0, src);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(c->fd, (struct sockaddr *)&s, sizeof s) < 0) die("bind source");
    c->started = now_ns;
    c->sent = c->got = 0;
    if (connect(c->fd, (struct sockaddr *)a, sizeof *a) < 0 && errno != EINPROGRESS) die("connect");
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void run_short(int port, int conc) {
    if (size > 65536) { fprintf(stderr, "SIZE too large\n"); exit(2); }
    int ep = epoll_create1(0);
    struct sockaddr_in a = target(port, "127.0.0.1");
    struct sconn *cs = calloc(conc, sizeof *cs);
    unsigned char *frame = malloc(4 + size);
    frame[0] = size >> 24; frame[1] = size >> 16; frame[2] = size >> 8; frame[3] = size;
    memcpy(frame + 4, tmpl, size);
    now_ns = mono();
    for (int i = 0; i < conc; i++) short_start(&cs[i], ep, &a);
    struct epoll_event evs[256];
    size_t flen = 4 + size;
    while ((now_ns = mono()) < end_ns) {
        int n = epoll_wait(ep, evs, 256, 100);
        now_ns = mono();
        for (int i = 0; i < n; i++) {
            struct sconn *c = evs[i].data.ptr;
            int fail = 0;
            if (c->sent < flen && (evs[i].events & EPOLLOUT)) {
                ssize_t w = write(c->fd, frame + c->sent, flen - c->sent);
                if (w > 0) c->sent += w;
                else if (w < 0 && errno != EAGAIN) { error("write"); fail = 1; }
                if (c->sent == flen) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                }
            }
            if (!fail && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                ssize_t r = read(c->fd, c->buf + c->got, flen - c->got);
                if (r > 0) c->got += r;
                else if (r == 0 || errno != EAGAIN) { error(r == 0 ? "server closed early" : "read"); fail = 1; }
            }
            if (fail || c->got == flen) {
                if (!fail) {
                    if (memcmp(c->buf, frame, flen) != 0) mismatches++;
                    record(c->started);
                }
                close(c->fd);
                short_start(c, ep, &a);
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: c_gen tcp|udp PORT SIZE CONNS DEPTH DURATION_MS WARMUP_MS\n"
                        "       c_gen short PORT SIZE CONCURRENCY DURATION_MS WARMUP_MS\n");
        return 2;
    }
    const char *mode = argv[1];
    int port = atoi(argv[2]);
    size = strtoul(argv[3], NULL, 10);
    int is_short = strcmp(mode, "short") == 0;
    int conns = atoi(argv[4]);
    int depth = is_short ? 1 : atoi(argv[5]);
    long dur_ms = atol(argv[is_short ? 5 : 6]), warm_ms = atol(argv[is_short ? 6 : 7]);
    if (!is_short && argc < 8) { fprintf(stderr, "missing WARMUP_MS\n"); return 2; }
    if (conns < 1 || depth < 1 || dur_ms < 1 || dur_ms > 600000) { fprintf(stderr, "bad arguments\n"); return 2; }
    int udp = strcmp(mode, "udp") == 0;
    if (udp && size < SOCKPERF_HEADER) { fprintf(stderr, "UDP SIZE must be >= %d (sockperf header)\n", SOCKPERF_HEADER); return 2; }
    make_template(udp);
    int64_t t0 = mono();
    warm_end = t0 + warm_ms * 1000000LL;
    end_ns = warm_end + dur_ms * 1000000LL;
    double cpu0 = cpu_s();
    if (!strcmp(mode, "tcp")) run_tcp(port, conns, depth);
    else if (udp) run_udp(port, conns, depth);
    else if (is_short) run_short(port, conns);
    else { fprintf(stderr, "unknown mode %s\n", mode); return 2; }
    double cpu = cpu_s() - cpu0;
    double wall = (mono() - t0) / 1e9;
    double secs = dur_ms / 1000.0;
    printf("{\"generator\":\"c_gen %s\",\"connections\":%d,\"size\":%zu,\"depth\":%d,\"duration_s\":%.3f,"
           "\"messages\":%llu,\"total_replies\":%llu,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,"
           "\"mismatches\":%llu,\"lost\":%llu,\"late\":0,\"errors\":[%s%s%s],\"error_count\":%llu,"
           "\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f},"
           "\"gen_cpu_s\":%.3f,\"gen_cpu_share\":%.3f}\n",
           mode, conns, size, depth, secs, (unsigned long long)measured, (unsigned long long)total_replies,
           measured / secs, measured * size / secs / 1e6, (unsigned long long)mismatches, (unsigned long long)lost,
           first_error[0] ? "\"" : "", first_error, first_error[0] ? "\"" : "", (unsigned long long)errors_n,
           quantile(0.5), quantile(0.99), quantile(0.999), max_ns / 1000.0, cpu, cpu / wall);
    return mismatches ? 1 : 0;
}
