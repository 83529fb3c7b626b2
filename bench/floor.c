/*
 * floor: the cheapest UDP DNS "server" this machine can run, for bench/run.sh compare.
 *
 * It does what geode's and gdnsd's UDP loops do in the kernel (one recvmmsg of up to 32
 * queries, one sendmmsg of their replies) and no DNS work at all: each reply is the query
 * with QR and AA set and one fixed A record spliced in after the question, so it has the
 * size of a real answer (ECS option echoed unchanged). Its queries per CPU-second is the
 * most any server with this loop can reach on this machine and kernel; divided by gdnsd's,
 * it is the highest geode/gdnsd ratio there is to win. Not a DNS server: it answers every
 * name, does not validate anything beyond the question's bounds, and never runs outside
 * the benchmark.
 *
 *   cc -O2 -o floor bench/floor.c && ./floor 127.0.0.1 15355
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 32
#define MAX_QUERY 4096
/* Room for the spliced record: name pointer, type, class, TTL, length, IPv4 address. */
#define RR_LEN 16

static unsigned char in[BATCH][MAX_QUERY];
static unsigned char out[BATCH][MAX_QUERY + RR_LEN];
static struct sockaddr_storage names[BATCH];

/* Offset just past the question, or 0 if the datagram is not a one-question query. */
static size_t question_end(const unsigned char *q, size_t len) {
    if (len < 12 || (q[2] & 0x80) || q[4] != 0 || q[5] != 1)
        return 0;
    size_t i = 12;
    while (i < len && q[i] != 0) {
        if (q[i] > 63)
            return 0;
        i += 1 + q[i];
    }
    i += 1 + 4;
    return i <= len ? i : 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s ADDRESS PORT\n", argv[0]);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("floor: socket/bind");
        return 1;
    }
    printf("floor: ready on %s:%s\n", argv[1], argv[2]);
    fflush(stdout);

    static const unsigned char rr[RR_LEN] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1};
    struct iovec iin[BATCH], iout[BATCH];
    struct mmsghdr rx[BATCH], tx[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iin[i] = (struct iovec){.iov_base = in[i], .iov_len = MAX_QUERY};
            rx[i].msg_hdr = (struct msghdr){.msg_name = &names[i], .msg_namelen = sizeof names[i],
                                            .msg_iov = &iin[i], .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, rx, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue;
        int m = 0;
        for (int i = 0; i < n; i++) {
            size_t len = rx[i].msg_len, qe = question_end(in[i], len);
            if (qe == 0)
                continue;
            unsigned char *o = out[i];
            memcpy(o, in[i], qe);
            o[2] = (unsigned char)((o[2] | 0x84) & ~0x02); /* QR, AA; not TC */
            o[3] &= 0x70;                                  /* RA off, rcode NOERROR */
            o[6] = 0, o[7] = 1;                            /* ANCOUNT 1 */
            memcpy(o + qe, rr, RR_LEN);
            memcpy(o + qe + RR_LEN, in[i] + qe, len - qe);
            iout[m] = (struct iovec){.iov_base = o, .iov_len = len + RR_LEN};
            tx[m].msg_hdr = (struct msghdr){.msg_name = &names[i], .msg_namelen = rx[i].msg_hdr.msg_namelen,
                                            .msg_iov = &iout[m], .msg_iovlen = 1};
            m++;
        }
        for (int sent = 0; sent < m;) {
            int k = sendmmsg(fd, tx + sent, (unsigned)(m - sent), 0);
            if (k <= 0)
                break; /* a refused reply is a lost query, as in the real servers */
            sent += k;
        }
    }
}
