/* cove-monitor: a container's files and sockets, as conmon keeps them (the
 * sync message, the k8s-file log, the attach socket and its clients, the
 * console, the ctl fifo). See monitor.c. */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>

#define TSLEN 43              /* "YYYY-MM-DDTHH:MM:SS.NNNNNNNNN+HH:MM stdout " */
#define IOV_N 128

/* One per process is right for these: the loop handles one thing at a time.
 * Static, not on the stack: a page is only resident once touched, where a
 * large stack frame is probed whole (stack clash protection). */
static char pathbuf[4200], tmpbuf[4200];
char errmsg[1024];

void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("cove-monitor: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Keep the reason in ``errmsg`` (for the sync message); returns -1. */
int err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return -1;
}

int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Write ``data`` to ``path`` whole or not at all (as g_file_set_contents). */
int set_contents(const char *path, const char *data) {
    char *tmp = tmpbuf;
    snprintf(tmp, sizeof tmpbuf, "%s.%d.tmp", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (write_all(fd, data, strlen(data)) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
        (void)unlink(tmp);
        return -1;
    }
    return 0;
}

void oom_adjust(const char *value) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)write_all(fd, value, strlen(value));
        close(fd);
    }
}

/* The sync message, as conmon's write_or_close_sync_fd writes it. */
void report(struct ctr *c, int res, const char *message) {
    static char out[2 * STDIO_BUF];
    size_t n = 0;
    if (c->sync_fd < 0)
        return;
    n += (size_t)snprintf(out, sizeof out, "{\"data\": %d", res);
    if (message && *message) {
        n += (size_t)snprintf(out + n, sizeof out - n, ", \"message\": \"");
        for (const unsigned char *p = (const unsigned char *)message;
             *p && n < sizeof out - 16; p++) {
            switch (*p) {
            case '"': n += (size_t)snprintf(out + n, sizeof out - n, "\\\""); break;
            case '\\': n += (size_t)snprintf(out + n, sizeof out - n, "\\\\"); break;
            case '/': n += (size_t)snprintf(out + n, sizeof out - n, "\\/"); break;
            case '\n': n += (size_t)snprintf(out + n, sizeof out - n, "\\n"); break;
            case '\r': n += (size_t)snprintf(out + n, sizeof out - n, "\\r"); break;
            case '\t': n += (size_t)snprintf(out + n, sizeof out - n, "\\t"); break;
            default:
                if (*p < 0x20)
                    n += (size_t)snprintf(out + n, sizeof out - n, "\\u00%02x", *p);
                else
                    out[n++] = (char)*p;
            }
        }
        n += (size_t)snprintf(out + n, sizeof out - n, "\"");
    }
    n += (size_t)snprintf(out + n, sizeof out - n, "}\n");
    (void)write_all(c->sync_fd, out, n);
    close(c->sync_fd);
    c->sync_fd = -1;
}

/* Only the link we made: a later create of the same container makes its
 * own, which is not ours to remove. */
void cleanup_symlink(struct ctr *c) {
    struct stat st;
    if (c->symlink_path && lstat(c->symlink_path, &st) == 0 && st.st_ino == c->symlink_ino)
        (void)unlink(c->symlink_path);
    free(c->symlink_path);
    c->symlink_path = NULL;
    if (c->csname)
        (void)unlink(c->csname);
    free(c->csname);
    c->csname = NULL;
}

/* -- the k8s-file log --------------------------------------------------- */

int open_log(struct ctr *c) {
    struct stat st;
    c->log_fd = open(c->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (c->log_fd < 0)
        return err("failed to open log file %s: %s", c->log, strerror(errno));
    c->log_written = fstat(c->log_fd, &st) == 0 ? (long long)st.st_size : 0;
    return 0;
}

/* A new, empty file in place of the old one (conmon's reopen_k8s_file). */
static void reopen_log(struct ctr *c) {
    char *tmp = tmpbuf;
    snprintf(tmp, sizeof tmpbuf, "%s.tmp", c->log);
    if (c->log_fd >= 0)
        close(c->log_fd);
    c->log_written = 0;
    c->log_fd = open(tmp, O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0640);
    if (c->log_fd < 0 || rename(tmp, c->log) < 0)
        say("failed to reopen log file %s: %s", c->log, strerror(errno));
}

static void timestamp(char *buf, size_t len, int pipe) {
    struct timespec ts = {0, 0};
    struct tm tm;
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    if (localtime_r(&ts.tv_sec, &tm) == NULL)
        memset(&tm, 0, sizeof tm), tm.tm_year = 70, tm.tm_mday = 1;
    long off = tm.tm_gmtoff;
    char sign = '+';
    if (off < 0)
        sign = '-', off = -off;
    snprintf(buf, len, "%d-%02d-%02dT%02d:%02d:%02d.%09ld%c%02ld:%02ld %s ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec, sign, off / 3600, (off % 3600) / 60,
             pipe == STDERR_PIPE ? "stderr" : "stdout");
}

struct iobuf {
    int n;
    struct iovec iov[IOV_N];
};

static void flush(struct ctr *c, struct iobuf *b) {
    int cnt = b->n;
    struct iovec *iov = b->iov;
    b->n = 0;
    while (cnt > 0 && c->log_fd >= 0) {
        ssize_t r = writev(c->log_fd, iov, cnt);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return; /* lost, as conmon loses it */
        size_t done = (size_t)r;
        while (cnt > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
}

static void append(struct ctr *c, struct iobuf *b, const void *data, size_t len) {
    if (b->n == IOV_N)
        flush(c, b);
    b->iov[b->n].iov_base = (void *)data;
    b->iov[b->n].iov_len = len;
    b->n++;
}

/* Each line as "TIMESTAMP STREAM F|P TEXT\n"; the file starts afresh when
 * the next line would take it past the cap (conmon's write_k8s_log). */
void write_log(struct ctr *c, int pipe, const char *buf, size_t len) {
    static struct iobuf b;
    char ts[128];
    b.n = 0;
    if (c->log_fd < 0)
        return;
    timestamp(ts, sizeof ts, pipe);
    size_t tslen = strlen(ts);
    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        int partial = nl == NULL;
        size_t line = partial ? len : (size_t)(nl - buf) + 1;
        long long cost = (long long)line + TSLEN + 2 + partial;
        if (c->log_size_max > 0 && c->log_written + cost > c->log_size_max) {
            flush(c, &b);
            reopen_log(c);
        }
        append(c, &b, ts, tslen);
        append(c, &b, partial ? "P " : "F ", 2);
        append(c, &b, buf, line);
        if (partial)
            append(c, &b, "\n", 1);
        c->log_written += cost;
        buf += line;
        len -= line;
    }
    flush(c, &b);
}

/* -- attach clients ----------------------------------------------------- */

void to_clients(struct ctr *c, const char *packet, size_t len) {
    for (int i = c->n_clients - 1; i >= 0; i--) {
        ssize_t n;
        do
            n = send(c->clients[i], packet, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* a slow reader gets a second, then is let go (conmon waits
             * forever); the monitor's other containers wait that second, once */
            struct pollfd p = {c->clients[i], POLLOUT, 0};
            if (poll(&p, 1, 1000) == 1)
                n = send(c->clients[i], packet, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        if (n < 0)
            shutdown(c->clients[i], SHUT_WR);
    }
}

/* One read of the container's output: to the log, then to the clients.
 * Returns the bytes read, 0 at the end, -1 when nothing is there now. */
ssize_t read_stdio(struct ctr *c, int fd, int pipe) {
    static char packet[STDIO_BUF + 1];
    ssize_t n;
    do
        n = read(fd, packet + 1, STDIO_BUF);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -1;
    if (n <= 0)
        return 0; /* EOF, or EIO: no one holds the pty's other side */
    write_log(c, pipe, packet + 1, (size_t)n);
    packet[0] = (char)pipe;
    to_clients(c, packet, (size_t)n + 1);
    return n;
}

/* -- setup ---------------------------------------------------------------- */

int setup_attach(struct ctr *c) {
    char *path = pathbuf;
    struct stat st;
    snprintf(path, sizeof pathbuf, "%s/%s", c->socket_dir, c->cid);
    if (unlink(path) < 0 && errno != ENOENT)
        return err("Failed to remove existing symlink for socket directory %s", path);
    if (symlink(c->bundle, path) < 0)
        return err("Failed to create symlink for attach socket: %s", strerror(errno));
    c->symlink_path = strdup(path);
    if (c->symlink_path == NULL || lstat(path, &st) < 0)
        return err("Failed to create symlink for attach socket: %s", strerror(errno));
    c->symlink_ino = st.st_ino;
    int dir = open(c->bundle, O_PATH | O_CLOEXEC);
    if (dir < 0)
        return err("failed to open bundle %s: %s", c->bundle, strerror(errno));
    snprintf(path, sizeof pathbuf, "%s/attach", c->bundle);
    c->attach_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->attach_fd < 0 || (unlink(path) < 0 && errno != ENOENT)) {
        close(dir);
        return err("Failed to create attach socket %s: %s", path, strerror(errno));
    }
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/attach", dir);
    int bad = fchmod(c->attach_fd, 0700) < 0
              || bind(c->attach_fd, (struct sockaddr *)&addr, sizeof addr) < 0
              || chmod(path, 0700) < 0 || listen(c->attach_fd, 10) < 0;
    int e = errno;
    close(dir);
    if (bad)
        return err("Failed to set up attach socket %s: %s", path, strerror(e));
    return 0;
}

int setup_ctl(struct ctr *c) {
    char *path = pathbuf;
    snprintf(path, sizeof pathbuf, "%s/ctl", c->bundle);
    if (mkfifo(path, 0660) < 0 && errno == EEXIST) {
        (void)unlink(path);
        if (mkfifo(path, 0660) < 0)
            return err("Failed to mkfifo at %s", path);
    }
    c->ctl_fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (c->ctl_fd < 0)
        return err("Failed to open terminal control fifo read half");
    /* a writer of our own: no flood of POLLHUPs when a client's goes */
    c->ctl_dummy = open(path, O_WRONLY | O_CLOEXEC);
    if (c->ctl_dummy < 0)
        return err("Failed to open terminal control fifo write half");
    return 0;
}

/* The socket runc hands the console's pty master over. */
int console_socket(struct ctr *c) {
    char name[] = "/tmp/cove-term.XXXXXX";
    int fd = mkstemp(name);
    if (fd < 0)
        return err("Failed to generate random path for console-socket");
    close(fd);
    if (unlink(name) < 0)
        return err("Failed to unlink temporary random path");
    c->cs_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->cs_fd < 0)
        return err("Failed to create socket");
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", name);
    if (fchmod(c->cs_fd, 0700) < 0 || bind(c->cs_fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        return err("Failed to listen on console-socket: %s", strerror(errno));
    c->csname = strdup(name);
    if (c->csname == NULL || listen(c->cs_fd, 128) < 0)
        return err("Failed to listen on console-socket: %s", strerror(errno));
    return 0;
}

/* The pty master runc sends over the console socket, if it has. */
void accept_console(struct ctr *c) {
    int conn;
    do
        conn = accept4(c->cs_fd, NULL, NULL, SOCK_CLOEXEC);
    while (conn < 0 && errno == EINTR);
    if (conn < 0)
        return;
    static char data[4096];
    char ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {data, sizeof data};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl;
    msg.msg_controllen = sizeof ctl;
    ssize_t n;
    do
        n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    close(conn);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (n < 0 || cm == NULL || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
        return;
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    if (c->out_fd >= 0) { /* one console: a second is not ours to keep */
        close(fd);
        return;
    }
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        t.c_oflag |= ONLCR;
        (void)tcsetattr(fd, TCSANOW, &t);
    }
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->out_fd = fd;
    c->in_fd = c->stdin_ ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
}

/* -- control fifo ------------------------------------------------------- */

static void reopen_or_resize(struct ctr *c, const char *line) {
    int type, height, width;
    if (sscanf(line, "%d %d %d", &type, &height, &width) != 3)
        return;
    if (height < 0 || width < 0 || height > 1000 || width > 1000)
        return;
    if (type == 1 && c->terminal && c->out_fd >= 0) {
        struct winsize ws;
        memset(&ws, 0, sizeof ws);
        ws.ws_row = (unsigned short)height;
        ws.ws_col = (unsigned short)width;
        (void)ioctl(c->out_fd, TIOCSWINSZ, &ws);
    } else if (type == 2) {
        reopen_log(c);
    }
}

#define CTL_BUF 200

void read_ctl(struct ctr *c) {
    if (c->ctlbuf == NULL && (c->ctlbuf = malloc(CTL_BUF)) == NULL)
        return; /* the line stays in the fifo until there is memory */
    ssize_t n = read(c->ctl_fd, c->ctlbuf + c->ctl_have, CTL_BUF - 1 - c->ctl_have);
    if (n <= 0)
        return;
    c->ctl_have += (size_t)n;
    c->ctlbuf[c->ctl_have] = '\0';
    char *beg = c->ctlbuf, *nl;
    while ((nl = strchr(beg, '\n')) != NULL) {
        *nl = '\0';
        reopen_or_resize(c, beg);
        beg = nl + 1;
    }
    c->ctl_have = strlen(beg);
    if (c->ctl_have == CTL_BUF - 1)
        c->ctl_have = 0; /* no newline in a whole buffer: not ours to understand */
    memmove(c->ctlbuf, beg, c->ctl_have);
    if (c->ctl_have == 0) {
        free(c->ctlbuf);
        c->ctlbuf = NULL;
    }
}
