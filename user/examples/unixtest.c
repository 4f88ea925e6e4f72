/* unixtest: AF_UNIX sockets as programs use them (issue 22): stream, datagram and seqpacket
 * sockets bound to paths and abstract names, listen/accept/connect, socket pairs, message
 * boundaries, poll and select. One line per check: "unixtest: NAME ok" or
 * "unixtest: NAME FAILED: why", then "unixtest: N checks, M failed". The same static binary
 * runs on Linux (the QEMU test boots Debian's kernel with it as init) and must pass there too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK_PROGRAM "unixtest"
#include <checklist.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int reap(pid_t c)
{
    int st;
    while (waitpid(c, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static socklen_t addr_of(struct sockaddr_un *a, const char *path, int abstract)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    if (abstract) {
        a->sun_path[0] = 0;
        memcpy(a->sun_path + 1, path, strlen(path));
        return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(path);
    }
    strcpy(a->sun_path, path);
    return sizeof *a;
}

static int bound(int type, const char *path, int abstract)
{
    struct sockaddr_un a;
    socklen_t l = addr_of(&a, path, abstract);
    int s = socket(AF_UNIX, type, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&a, l) < 0)
        return -1;
    return s;
}

static int connect_to(int type, const char *path, int abstract)
{
    struct sockaddr_un a;
    socklen_t l = addr_of(&a, path, abstract);
    int s = socket(AF_UNIX, type, 0);
    if (s < 0)
        return -errno;
    if (connect(s, (struct sockaddr *)&a, l) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    return s;
}

#define SPATH "/tmp/unixtest.sock"
#define DPATH "/tmp/unixtest.dg"
#define CPATH "/tmp/unixtest.client"
#define QPATH "/tmp/unixtest.seq"

static void test_stream(int abstract)
{
    const char *path = abstract ? "unixtest-abstract" : SPATH;
    const char *tag = abstract ? "abstract_" : "";
    char name[64];
    unlink(SPATH);
    int l = bound(SOCK_STREAM, path, abstract);
    int lr = l >= 0 ? listen(l, 4) : -1;
    snprintf(name, sizeof name, "%sstream_bind_listen", tag);
    check(name, l >= 0 && lr == 0, "%s", strerror(errno));
    if (l < 0)
        return;
    struct pollfd pf = {l, POLLIN, 0};
    int before = poll(&pf, 1, 0);
    pid_t c = fork();
    if (c == 0) {
        int s = connect_to(SOCK_STREAM, path, abstract);
        if (s < 0)
            _exit(2);
        if (write(s, "ping", 4) != 4)
            _exit(3);
        char b[8] = {0};
        if (read(s, b, sizeof b) != 4 || memcmp(b, "pong", 4))
            _exit(4);
        struct sockaddr_un peer;
        socklen_t pl = sizeof peer;
        if (getpeername(s, (struct sockaddr *)&peer, &pl) < 0)
            _exit(5);
        if (!abstract && strcmp(peer.sun_path, SPATH))
            _exit(6);
        _exit(read(s, b, sizeof b) == 0 ? 0 : 7); /* end of file after the server closes */
    }
    pf.revents = 0;
    int after = poll(&pf, 1, 5000);
    snprintf(name, sizeof name, "%spoll_sees_a_connection", tag);
    check(name, before == 0 && after == 1 && (pf.revents & POLLIN), "before %d after %d revents %#x", before, after, pf.revents);
    int a = accept(l, NULL, NULL);
    char b[8] = {0};
    int n = a >= 0 ? read(a, b, sizeof b) : -1;
    int w = a >= 0 ? write(a, "pong", 4) : -1;
    struct sockaddr_un me;
    socklen_t ml = sizeof me;
    int gs = getsockname(l, (struct sockaddr *)&me, &ml);
    if (a >= 0)
        close(a);
    int st = reap(c);
    snprintf(name, sizeof name, "%sstream_accept_connect_exchange", tag);
    check(name, a >= 0 && n == 4 && !memcmp(b, "ping", 4) && w == 4 && st == 0, "accept %d read %d write %d child %d", a, n, w, st);
    snprintf(name, sizeof name, "%sgetsockname", tag);
    check(name, gs == 0 && (abstract ? (me.sun_path[0] == 0 && !memcmp(me.sun_path + 1, path, strlen(path))) : !strcmp(me.sun_path, SPATH)), "%s", strerror(errno));
    if (!abstract) {
        struct stat sb;
        check("bound_path_is_a_socket", stat(SPATH, &sb) == 0 && S_ISSOCK(sb.st_mode), "mode %o", sb.st_mode);
        int again = bound(SOCK_STREAM, SPATH, 0);
        check("bind_to_a_used_path_is_eaddrinuse", again < 0 && errno == EADDRINUSE, "%s", strerror(errno));
        int fl = fcntl(l, F_GETFL);
        fcntl(l, F_SETFL, fl | O_NONBLOCK);
        int na = accept(l, NULL, NULL);
        check("nonblocking_accept_is_eagain", na < 0 && errno == EAGAIN, "%d %s", na, strerror(errno));
        int o = open(SPATH, O_RDONLY);
        check("open_a_socket_is_enxio", o < 0 && errno == ENXIO, "%d %s", o, strerror(errno));
    }
    close(l);
    if (!abstract) {
        int r = connect_to(SOCK_STREAM, SPATH, 0);
        check("connect_after_close_is_econnrefused", r == -ECONNREFUSED, "%d", r);
        unlink(SPATH);
        r = connect_to(SOCK_STREAM, SPATH, 0);
        check("connect_to_no_path_is_enoent", r == -ENOENT, "%d", r);
    }
}

static void test_dgram(void)
{
    unlink(DPATH);
    unlink(CPATH);
    int s = bound(SOCK_DGRAM, DPATH, 0);
    check("dgram_bind", s >= 0, "%s", strerror(errno));
    if (s < 0)
        return;
    struct sockaddr_un to;
    socklen_t tl = addr_of(&to, DPATH, 0);
    pid_t c = fork();
    if (c == 0) {
        int u = socket(AF_UNIX, SOCK_DGRAM, 0);
        sleep_ms(50);
        sendto(u, "one", 3, 0, (struct sockaddr *)&to, tl);
        sendto(u, "second", 6, 0, (struct sockaddr *)&to, tl);
        int cb = bound(SOCK_DGRAM, CPATH, 0);
        sendto(cb, "from-bound", 10, 0, (struct sockaddr *)&to, tl);
        char b[32];
        int n = recv(cb, b, sizeof b, 0); /* the server's reply */
        _exit(n == 5 && !memcmp(b, "reply", 5) ? 0 : 1);
    }
    char b[32] = {0};
    int n1 = recv(s, b, sizeof b, 0);
    int ok1 = n1 == 3 && !memcmp(b, "one", 3);
    int n2 = recv(s, b, 3, MSG_TRUNC); /* cut, but the full length is reported */
    int ok2 = n2 == 6 && !memcmp(b, "sec", 3);
    struct sockaddr_un from;
    socklen_t fl = sizeof from;
    memset(b, 0, sizeof b);
    int n3 = recvfrom(s, b, sizeof b, 0, (struct sockaddr *)&from, &fl);
    int ok3 = n3 == 10 && !strcmp(from.sun_path, CPATH);
    int r = sendto(s, "reply", 5, 0, (struct sockaddr *)&from, fl);
    int st = reap(c);
    check("dgram_keeps_message_boundaries", ok1 && ok2, "n1 %d n2 %d", n1, n2);
    check("dgram_recvfrom_names_the_sender", ok3 && r == 5 && st == 0, "n3 %d '%s' reply %d child %d", n3, from.sun_path, r, st);
    int e = recv(s, b, sizeof b, MSG_DONTWAIT);
    check("dgram_dontwait_on_empty_is_eagain", e < 0 && errno == EAGAIN, "%d", e);
    /* connect gives a default destination; sendmsg gathers, recvmsg scatters. */
    int u = socket(AF_UNIX, SOCK_DGRAM, 0);
    int cr = connect(u, (struct sockaddr *)&to, tl);
    struct iovec out[2] = {{"gath", 4}, {"ered", 4}};
    struct msghdr m = {.msg_iov = out, .msg_iovlen = 2};
    int sm = sendmsg(u, &m, 0);
    char p1[3], p2[16] = {0};
    struct iovec in[2] = {{p1, 3}, {p2, sizeof p2}};
    struct msghdr mr = {.msg_iov = in, .msg_iovlen = 2};
    int rm = recvmsg(s, &mr, 0);
    check("dgram_connect_sendmsg_recvmsg", cr == 0 && sm == 8 && rm == 8 && !memcmp(p1, "gat", 3) && !memcmp(p2, "hered", 5), "connect %d sendmsg %d recvmsg %d", cr, sm, rm);
    struct iovec small = {p1, 2};
    struct msghdr ms = {.msg_iov = &small, .msg_iovlen = 1};
    send(u, "long message", 12, 0);
    int rt = recvmsg(s, &ms, 0);
    check("recvmsg_flags_truncation", rt == 2 && (ms.msg_flags & MSG_TRUNC), "%d flags %#x", rt, ms.msg_flags);
    close(u);
    close(s);
    int nd = connect_to(SOCK_DGRAM, DPATH, 0);
    check("dgram_connect_to_closed_is_econnrefused", nd == -ECONNREFUSED, "%d", nd);
    unlink(DPATH);
    unlink(CPATH);
}

static void test_pairs_and_seqpacket(void)
{
    int sv[2];
    int r = socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
    check("seqpacket_socketpair", r == 0, "%s", strerror(errno));
    if (r == 0) {
        write(sv[0], "abc", 3);
        write(sv[0], "defgh", 5);
        char b[16];
        int n1 = read(sv[1], b, sizeof b), n2 = read(sv[1], b, sizeof b);
        check("seqpacket_keeps_boundaries", n1 == 3 && n2 == 5, "%d %d", n1, n2);
        close(sv[0]);
        struct pollfd pf = {sv[1], POLLIN, 0};
        int pr = poll(&pf, 1, 1000);
        int eof = read(sv[1], b, sizeof b);
        check("seqpacket_peer_close_is_hup_and_eof", pr == 1 && (pf.revents & POLLHUP) && eof == 0, "poll %d revents %#x read %d", pr, pf.revents, eof);
        close(sv[1]);
    }
    r = socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
    if (r == 0) {
        send(sv[1], "x", 1, 0);
        send(sv[1], "yy", 2, 0);
        char b[8];
        int n1 = recv(sv[0], b, sizeof b, 0), n2 = recv(sv[0], b, sizeof b, 0);
        check("dgram_socketpair", n1 == 1 && n2 == 2, "%d %d", n1, n2);
        close(sv[0]);
        close(sv[1]);
    } else {
        check("dgram_socketpair", 0, "%s", strerror(errno));
    }
    /* Seqpacket with listen/accept; select waits for the message. */
    unlink(QPATH);
    int l = bound(SOCK_SEQPACKET, QPATH, 0);
    int lr = l >= 0 ? listen(l, 1) : -1;
    pid_t c = fork();
    if (c == 0) {
        int s = connect_to(SOCK_SEQPACKET, QPATH, 0);
        if (s < 0)
            _exit(2);
        sleep_ms(150);
        write(s, "packet", 6);
        char b[8];
        _exit(read(s, b, sizeof b) == 0 ? 0 : 3);
    }
    int a = l >= 0 ? accept(l, NULL, NULL) : -1;
    fd_set rs;
    FD_ZERO(&rs);
    if (a >= 0)
        FD_SET(a, &rs);
    struct timeval tv = {0, 20000};
    int s0 = a >= 0 ? select(a + 1, &rs, NULL, NULL, &tv) : -1;
    FD_ZERO(&rs);
    if (a >= 0)
        FD_SET(a, &rs);
    tv.tv_sec = 5;
    int s1 = a >= 0 ? select(a + 1, &rs, NULL, NULL, &tv) : -1;
    char b[16];
    int n = a >= 0 ? read(a, b, sizeof b) : -1;
    if (a >= 0)
        close(a);
    int st = reap(c);
    check("seqpacket_listen_accept_select", lr == 0 && a >= 0 && s0 == 0 && s1 == 1 && n == 6 && st == 0, "listen %d accept %d select %d %d read %d child %d", lr, a, s0, s1, n, st);
    close(l);
    unlink(QPATH);
    int t = socket(AF_UNIX, SOCK_STREAM, 0);
    int so = -1;
    socklen_t sl = sizeof so;
    getsockopt(t, SOL_SOCKET, SO_TYPE, &so, &sl);
    check("getsockopt_so_type", so == SOCK_STREAM, "%d", so);
    check("listen_on_dgram_is_eopnotsupp", listen(socket(AF_UNIX, SOCK_DGRAM, 0), 1) < 0 && errno == EOPNOTSUPP, "%s", strerror(errno));
    check("send_unconnected_stream_is_enotconn", send(t, "x", 1, MSG_NOSIGNAL) < 0 && errno == ENOTCONN, "%s", strerror(errno));
    check("inet_is_not_unix", socket(AF_UNIX, SOCK_STREAM, 7) < 0 && errno == EPROTONOSUPPORT, "%s", strerror(errno));
    close(t);
}

/* Sends descriptor `fd` with one byte over socket `s` (SCM_RIGHTS). */
static int send_fd(int s, int fd)
{
    char byte = 'F';
    struct iovec io = {&byte, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(s, &m, 0);
}

/* Receives a descriptor sent with send_fd (-1 if none came). */
static int recv_fd(int s)
{
    char byte;
    struct iovec io = {&byte, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    if (recvmsg(s, &m, 0) != 1)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static void test_rights(void)
{
    for (int ty = 0; ty < 2; ty++) {
        int sv[2], p[2];
        socketpair(AF_UNIX, ty ? SOCK_DGRAM : SOCK_STREAM, 0, sv);
        pipe(p);
        pid_t c = fork();
        if (c == 0) {
            /* The child gets the pipe's write end from its parent over the socket. */
            close(p[1]);
            int fd = recv_fd(sv[1]);
            _exit(fd >= 0 && write(fd, "via fd", 6) == 6 ? 0 : 1);
        }
        int s = send_fd(sv[0], p[1]);
        close(p[1]);
        char b[8] = {0};
        int n = read(p[0], b, sizeof b);
        int st = reap(c);
        check(ty ? "scm_rights_over_dgram" : "scm_rights_over_stream", s == 1 && n == 6 && !memcmp(b, "via fd", 6) && st == 0, "sendmsg %d read %d child %d", s, n, st);
        close(p[0]);
        close(sv[0]);
        close(sv[1]);
    }
}

static int run(int argc, char *argv[])
{
    (void)argc;
    (void)argv;
    test_stream(0);
    test_stream(1);
    test_dgram();
    test_pairs_and_seqpacket();
    test_rights();
    printf("unixtest: %d checks, %d failed\n", checks, failed);
    fflush(stdout);
    return failed != 0;
}

int main(int argc, char *argv[])
{
    return check_main(argc, argv, run);
}
