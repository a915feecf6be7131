/* Baselines for `bench/run.sh`: single-threaded UDP echo, each datagram back
 * to its sender unchanged. Not part of the product.
 *
 *   c_echo_udp plain PORT   blocking recvfrom -> sendto, one syscall per datagram each way
 *   c_echo_udp mmsg PORT    recvmmsg (up to 64, MSG_WAITFORONE) -> one sendmmsg of the batch
 *
 * Listens on 127.0.0.1 only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define MAXD 65536

static unsigned char bufs[BATCH][MAXD];

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "plain") && strcmp(argv[1], "mmsg"))) {
        fprintf(stderr, "usage: %s plain|mmsg PORT\n", argv[0]);
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0), big = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 1; }
    if (!strcmp(argv[1], "plain")) {
        for (;;) {
            struct sockaddr_storage src;
            socklen_t sl = sizeof src;
            ssize_t n = recvfrom(s, bufs[0], MAXD, 0, (struct sockaddr *)&src, &sl);
            if (n >= 0) sendto(s, bufs[0], (size_t)n, 0, (struct sockaddr *)&src, sl);
        }
    }
    struct mmsghdr m[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage src[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = MAXD};
            m[i].msg_hdr = (struct msghdr){.msg_name = &src[i], .msg_namelen = sizeof src[i], .msg_iov = &iov[i], .msg_iovlen = 1};
        }
        int n = recvmmsg(s, m, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        for (int i = 0; i < n; i++) iov[i].iov_len = m[i].msg_len;
        for (int done = 0; done < n;) {
            int w = sendmmsg(s, m + done, (unsigned)(n - done), 0);
            if (w <= 0) break; /* a failed send drops the rest of this batch, like a full queue would */
            done += w;
        }
    }
}
