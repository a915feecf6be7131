/* Baseline for `bench/run.sh`: a single-threaded epoll echo of length-prefixed
 * frames (4-byte big-endian length, then payload), the measuring stick for
 * this machine's limit. Not part of the product.
 *
 * Data flow per connection: read (up to 256 KiB) into one buffer -> find the
 * complete frames at its front -> write exactly those bytes straight back
 * from the buffer (one write per read, however many frames) -> keep the
 * partial frame at the front for the next read. If the peer's receive window
 * is full, stop reading that connection until EPOLLOUT drains what is left.
 *
 * Usage: c_echo_tcp PORT   (listens on 127.0.0.1 only)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (256 * 1024)
#define MAX_FRAME (BUF - 4)

struct conn {
    int fd;
    size_t len;  /* bytes in buf */
    size_t out;  /* bytes at the front of buf that are complete frames, not yet written */
    size_t sent; /* of those, already written */
    unsigned char buf[BUF];
};

static size_t complete_frames(const unsigned char *b, size_t n, int *bad) {
    size_t at = 0;
    while (n - at >= 4) {
        uint32_t len = ((uint32_t)b[at] << 24) | ((uint32_t)b[at + 1] << 16) | ((uint32_t)b[at + 2] << 8) | b[at + 3];
        if (len > MAX_FRAME) { *bad = 1; break; }
        if (n - at - 4 < len) break;
        at += 4 + len;
    }
    return at;
}

static void close_conn(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Writes pending frames; returns 0 when all were written, 1 if the socket is full, -1 on error. */
static int flush(struct conn *c) {
    while (c->sent < c->out) {
        ssize_t w = write(c->fd, c->buf + c->sent, c->out - c->sent);
        if (w < 0) return (errno == EAGAIN) ? 1 : -1;
        c->sent += (size_t)w;
    }
    memmove(c->buf, c->buf + c->out, c->len - c->out);
    c->len -= c->out;
    c->out = c->sent = 0;
    return 0;
}

static int on_ready(int ep, struct conn *c, uint32_t ev) {
    struct epoll_event e = {.data.ptr = c};
    if (c->out) { /* waiting for EPOLLOUT */
        int r = flush(c);
        if (r < 0) return -1;
        if (r > 0) return 0;
        e.events = EPOLLIN;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
    }
    (void)ev;
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->len, BUF - c->len);
        if (n == 0) return -1;
        if (n < 0) return (errno == EAGAIN) ? 0 : -1;
        c->len += (size_t)n;
        int bad = 0;
        c->out = complete_frames(c->buf, c->len, &bad);
        if (bad && c->out == 0) return -1;
        int r = flush(c);
        if (r < 0) return -1;
        if (r > 0) {
            e.events = EPOLLOUT;
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
            return 0;
        }
        if ((size_t)n < BUF / 2) return 0; /* drained the socket: wait for the next readiness */
    }
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) { perror("bind/listen"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = malloc(sizeof *c);
                    if (!c) { close(fd); continue; }
                    c->fd = fd; c->len = c->out = c->sent = 0;
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            struct conn *c = evs[i].data.ptr;
            if (on_ready(ep, c, evs[i].events) < 0) close_conn(ep, c);
        }
    }
}
