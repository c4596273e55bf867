/* cove-monitor: a container's monitor, in place of conmon (see _monitor.py).
 *
 * It takes the subset of conmon's command line cove passes and keeps
 * conmon's files and protocols: the monitor's pid file, the JSON line on
 * the _OCI_SYNCPIPE pipe ({"data": PID} or {"data": -1, "message": ...}),
 * the k8s-file log with its size cap, the attach socket (SOCK_SEQPACKET at
 * <bundle>/attach, reached through the symlink <socket dir>/<cid>; packets
 * out are one byte of stream type, 2 stdout or 3 stderr, and the data;
 * packets in are raw input), the ``ctl`` fifo in the bundle ("1 H W"
 * resize, "2 0 0" reopen the log) and the exit file <exit dir>/<cid>
 * holding the init's exit code (128+N for signal N).
 *
 * cove's own addition: with _COVE_MNTNS=FD (an fd of coved's mount
 * namespace) it leaves the namespace it was started in once runc create is
 * done. That one is a fresh copy coved made for the create (host/freshns.py)
 * with the container's rootfs in it; the container has its own copy by
 * then, so the monitor need not keep this one (and its mounts) alive.
 *
 * No glib, no dynamic libraries (built -static when the C library allows):
 * it costs a container a fraction of conmon's memory and start-up time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>

#define VERSION "cove-monitor 1"
#define STDIO_BUF 8192        /* conmon's STDIO_BUF_SIZE: one read, one packet */
#define SOCK_BUF 32768        /* conmon's CONN_SOCK_BUF_SIZE: one client read */
#define MAX_CLIENTS 32
#define MAX_RUNTIME_ARGS 16
#define STDOUT_PIPE 2
#define STDERR_PIPE 3
#define TSLEN 43              /* "YYYY-MM-DDTHH:MM:SS.NNNNNNNNN+HH:MM stdout " */
#define IOV_N 128

/* options (conmon's names) */
static const char *o_cid, *o_runtime, *o_bundle, *o_pidfile, *o_exit_dir, *o_log;
static const char *o_monitor_pidfile, *o_socket_dir;
static const char *o_runtime_args[MAX_RUNTIME_ARGS];
static int n_runtime_args;
static long long o_log_size_max = -1;
static int o_terminal, o_stdin, o_leave_stdin_open, o_no_sync_log;

/* Big buffers are static, not on the stack: a page is only resident once
 * touched, where a large stack frame is probed whole (stack clash
 * protection) in every monitor. */
static char errbuf[STDIO_BUF];
static char pathbuf[4200], tmpbuf[4200];

static int sync_fd = -1;
static int log_fd = -1;
static long long log_written;
static int in_fd = -1, out_fd = -1, err_fd = -1;
static int attach_fd = -1, ctl_fd = -1, ctl_dummy = -1;
static int clients[MAX_CLIENTS];
static int n_clients;
static char symlink_path[4096];
static char csname[64]; /* the console socket, until runc has connected */
static pid_t create_pid = -1, container_pid = -1;
static int container_status = -1, container_done;

static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("cove-monitor: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int write_all(int fd, const void *buf, size_t len) {
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

/* The sync message, as conmon's write_or_close_sync_fd writes it. */
static void report(int res, const char *message) {
    static char out[2 * STDIO_BUF];
    size_t n = 0;
    if (sync_fd < 0)
        return;
    n += (size_t)snprintf(out, sizeof out, "{\"data\": %d", res);
    if (message && *message) {
        n += (size_t)snprintf(out + n, sizeof out - n, ", \"message\": \"");
        for (const unsigned char *c = (const unsigned char *)message;
             *c && n < sizeof out - 16; c++) {
            switch (*c) {
            case '"': n += (size_t)snprintf(out + n, sizeof out - n, "\\\""); break;
            case '\\': n += (size_t)snprintf(out + n, sizeof out - n, "\\\\"); break;
            case '/': n += (size_t)snprintf(out + n, sizeof out - n, "\\/"); break;
            case '\n': n += (size_t)snprintf(out + n, sizeof out - n, "\\n"); break;
            case '\r': n += (size_t)snprintf(out + n, sizeof out - n, "\\r"); break;
            case '\t': n += (size_t)snprintf(out + n, sizeof out - n, "\\t"); break;
            default:
                if (*c < 0x20)
                    n += (size_t)snprintf(out + n, sizeof out - n, "\\u00%02x", *c);
                else
                    out[n++] = (char)*c;
            }
        }
        n += (size_t)snprintf(out + n, sizeof out - n, "\"");
    }
    n += (size_t)snprintf(out + n, sizeof out - n, "}\n");
    (void)write_all(sync_fd, out, n);
    close(sync_fd);
    sync_fd = -1;
}

static void cleanup_symlink(void) {
    if (symlink_path[0])
        (void)unlink(symlink_path);
    symlink_path[0] = '\0';
    if (csname[0])
        (void)unlink(csname);
    csname[0] = '\0';
}

static void fail(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    say("%s", msg);
    cleanup_symlink(); /* before the report: the caller goes on at once */
    report(-1, msg);
    exit(1);
}

/* Write ``data`` to ``path`` whole or not at all (as g_file_set_contents). */
static int set_contents(const char *path, const char *data) {
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

static void oom_adjust(const char *value) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)write_all(fd, value, strlen(value));
        close(fd);
    }
}

/* -- the k8s-file log --------------------------------------------------- */

static void open_log(void) {
    struct stat st;
    log_fd = open(o_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (log_fd < 0) {
        say("failed to open log file %s: %s", o_log, strerror(errno));
        exit(1);
    }
    log_written = fstat(log_fd, &st) == 0 ? (long long)st.st_size : 0;
}

/* A new, empty file in place of the old one (conmon's reopen_k8s_file). */
static void reopen_log(void) {
    char *tmp = tmpbuf;
    if (!o_log)
        return;
    snprintf(tmp, sizeof tmpbuf, "%s.tmp", o_log);
    if (log_fd >= 0)
        close(log_fd);
    log_written = 0;
    log_fd = open(tmp, O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0640);
    if (log_fd < 0 || rename(tmp, o_log) < 0)
        say("failed to reopen log file %s: %s", o_log, strerror(errno));
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

static void flush(struct iobuf *b) {
    int cnt = b->n;
    struct iovec *iov = b->iov;
    b->n = 0;
    while (cnt > 0 && log_fd >= 0) {
        ssize_t r = writev(log_fd, iov, cnt);
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

static void append(struct iobuf *b, const void *data, size_t len) {
    if (b->n == IOV_N)
        flush(b);
    b->iov[b->n].iov_base = (void *)data;
    b->iov[b->n].iov_len = len;
    b->n++;
}

/* Each line as "TIMESTAMP STREAM F|P TEXT\n"; the file starts afresh when
 * the next line would take it past the cap (conmon's write_k8s_log). */
static void write_log(int pipe, const char *buf, size_t len) {
    char ts[128];
    struct iobuf b;
    b.n = 0;
    if (log_fd < 0)
        return;
    timestamp(ts, sizeof ts, pipe);
    size_t tslen = strlen(ts);
    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        int partial = nl == NULL;
        size_t line = partial ? len : (size_t)(nl - buf) + 1;
        long long cost = (long long)line + TSLEN + 2 + partial;
        if (o_log_size_max > 0 && log_written + cost > o_log_size_max) {
            flush(&b);
            reopen_log();
        }
        append(&b, ts, tslen);
        append(&b, partial ? "P " : "F ", 2);
        append(&b, buf, line);
        if (partial)
            append(&b, "\n", 1);
        log_written += cost;
        buf += line;
        len -= line;
    }
    flush(&b);
}

/* -- attach clients ----------------------------------------------------- */

static void drop_client(int i) {
    close(clients[i]);
    clients[i] = clients[--n_clients];
    if (o_stdin && !o_leave_stdin_open && in_fd >= 0) {
        close(in_fd);
        in_fd = -1;
    }
}

static void to_clients(const char *packet, size_t len) {
    for (int i = n_clients - 1; i >= 0; i--) {
        ssize_t n;
        do
            n = send(clients[i], packet, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* a slow reader gets a second, then is let go (conmon waits forever) */
            struct pollfd p = {clients[i], POLLOUT, 0};
            if (poll(&p, 1, 1000) == 1)
                n = send(clients[i], packet, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        if (n < 0)
            shutdown(clients[i], SHUT_WR);
    }
}

/* One read of the container's output: to the log, then to the clients.
 * Returns the bytes read, 0 at the end, -1 when nothing is there now. */
static ssize_t read_stdio(int fd, int pipe) {
    static char packet[STDIO_BUF + 1];
    ssize_t n;
    do
        n = read(fd, packet + 1, STDIO_BUF);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -1;
    if (n <= 0)
        return 0; /* EOF, or EIO: no one holds the pty's other side */
    write_log(pipe, packet + 1, (size_t)n);
    packet[0] = (char)pipe;
    to_clients(packet, (size_t)n + 1);
    return n;
}

/* -- setup ---------------------------------------------------------------- */

static void setup_attach(void) {
    char *path = pathbuf;
    snprintf(symlink_path, sizeof symlink_path, "%s/%s", o_socket_dir, o_cid);
    if (unlink(symlink_path) < 0 && errno != ENOENT)
        fail("Failed to remove existing symlink for socket directory %s", symlink_path);
    if (symlink(o_bundle, symlink_path) < 0) {
        symlink_path[0] = '\0';
        fail("Failed to create symlink for attach socket: %s", strerror(errno));
    }
    int dir = open(o_bundle, O_PATH | O_CLOEXEC);
    if (dir < 0)
        fail("failed to open bundle %s: %s", o_bundle, strerror(errno));
    snprintf(path, sizeof pathbuf, "%s/attach", o_bundle);
    attach_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (attach_fd < 0)
        fail("Failed to create attach socket: %s", strerror(errno));
    if (unlink(path) < 0 && errno != ENOENT)
        fail("Failed to remove existing socket %s", path);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/attach", dir);
    if (fchmod(attach_fd, 0700) < 0 || bind(attach_fd, (struct sockaddr *)&addr, sizeof addr) < 0
        || chmod(path, 0700) < 0 || listen(attach_fd, 10) < 0)
        fail("Failed to set up attach socket %s: %s", path, strerror(errno));
    close(dir);
}

static void setup_ctl(void) {
    char *path = pathbuf;
    snprintf(path, sizeof pathbuf, "%s/ctl", o_bundle);
    if (mkfifo(path, 0660) < 0 && errno == EEXIST) {
        (void)unlink(path);
        if (mkfifo(path, 0660) < 0)
            fail("Failed to mkfifo at %s", path);
    }
    ctl_fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (ctl_fd < 0)
        fail("Failed to open terminal control fifo read half");
    /* a writer of our own: no flood of POLLHUPs when a client's goes */
    ctl_dummy = open(path, O_WRONLY | O_CLOEXEC);
    if (ctl_dummy < 0)
        fail("Failed to open terminal control fifo write half");
}

static int console_socket(char *name, size_t len) {
    snprintf(name, len, "/tmp/cove-term.XXXXXX");
    int fd = mkstemp(name);
    if (fd < 0)
        fail("Failed to generate random path for console-socket");
    close(fd);
    if (unlink(name) < 0)
        fail("Failed to unlink temporary random path");
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail("Failed to create socket");
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", name);
    if (fchmod(fd, 0700) < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0
        || listen(fd, 128) < 0)
        fail("Failed to listen on console-socket: %s", strerror(errno));
    return fd;
}

/* The pty master runc sends over the console socket. */
static void accept_console(int lfd, const char *name) {
    int conn;
    do
        conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
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
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (n < 0 || c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
        return;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    (void)unlink(name);
    csname[0] = '\0';
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        t.c_oflag |= ONLCR;
        (void)tcsetattr(fd, TCSANOW, &t);
    }
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    out_fd = fd;
    in_fd = o_stdin ? dup(fd) : -1;
}

/* -- control fifo ------------------------------------------------------- */

static void ctl_line(const char *line) {
    int type, height, width;
    if (sscanf(line, "%d %d %d", &type, &height, &width) != 3)
        return;
    if (height < 0 || width < 0 || height > 1000 || width > 1000)
        return;
    if (type == 1 && o_terminal && out_fd >= 0) {
        struct winsize ws;
        memset(&ws, 0, sizeof ws);
        ws.ws_row = (unsigned short)height;
        ws.ws_col = (unsigned short)width;
        (void)ioctl(out_fd, TIOCSWINSZ, &ws);
    } else if (type == 2) {
        reopen_log();
    }
}

static void read_ctl(void) {
    static char buf[200];
    static size_t have;
    ssize_t n = read(ctl_fd, buf + have, sizeof buf - 1 - have);
    if (n <= 0)
        return;
    have += (size_t)n;
    buf[have] = '\0';
    char *beg = buf, *nl;
    while ((nl = strchr(beg, '\n')) != NULL) {
        *nl = '\0';
        ctl_line(beg);
        beg = nl + 1;
    }
    have = strlen(beg);
    if (have == sizeof buf - 1)
        have = 0; /* no newline in a whole buffer: not ours to understand */
    memmove(buf, beg, have);
}

/* -- children ----------------------------------------------------------- */

#define EARLY 16
static pid_t early_pid[EARLY];
static int early_status[EARLY];
static int n_early;
static int runtime_status = -1, runtime_done;

static void reap(void) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0) {
            /* ECHILD: the init is not our child; gone is gone */
            if (container_pid > 0 && !container_done && kill(container_pid, 0) < 0
                && errno == ESRCH) {
                container_status = 0;
                container_done = 1;
            }
            return;
        }
        if (pid == 0)
            return;
        if (pid == create_pid) {
            runtime_status = status;
            runtime_done = 1;
        } else if (container_pid > 0 && pid == container_pid) {
            container_status = status;
            container_done = 1;
        } else if (container_pid <= 0 && n_early < EARLY) {
            early_pid[n_early] = pid;
            early_status[n_early++] = status;
        }
    }
}

static void on_signal(int sfd) {
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGCHLD)
            continue;
        /* SIGTERM, SIGINT, SIGQUIT: to the container (or runc), as conmon */
        pid_t to = container_pid > 0 ? container_pid : create_pid;
        if (to > 0)
            (void)kill(to, sig);
    }
    reap();
}

static int host_ns = -1; /* _COVE_MNTNS */

static void leave_create_ns(void) {
    if (host_ns < 0)
        return;
    if (setns(host_ns, CLONE_NEWNS) < 0)
        say("leaving the create's mount namespace: %s", strerror(errno));
    close(host_ns);
    host_ns = -1;
}

static int exit_status(int status) {
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

static void parse(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VAL(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (strcmp(a, "--version") == 0) {
            puts(VERSION);
            exit(0);
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--terminal") == 0) {
            o_terminal = 1;
        } else if (strcmp(a, "-i") == 0 || strcmp(a, "--stdin") == 0) {
            o_stdin = 1;
        } else if (strcmp(a, "--leave-stdin-open") == 0) {
            o_leave_stdin_open = 1;
        } else if (strcmp(a, "--no-sync-log") == 0) {
            o_no_sync_log = 1;
        } else if (VAL("--api-version") || VAL("-u") || VAL("-n") || VAL("--log-level")) {
            /* conmon's: cove's monitor speaks API 1 and has one name */
        } else if (VAL("-c")) {
            o_cid = v;
        } else if (VAL("-r")) {
            o_runtime = v;
        } else if (VAL("-b")) {
            o_bundle = v;
        } else if (VAL("-p")) {
            o_pidfile = v;
        } else if (VAL("--exit-dir")) {
            o_exit_dir = v;
        } else if (VAL("-l")) {
            o_log = strncmp(v, "k8s-file:", 9) == 0 ? v + 9 : v;
        } else if (VAL("--log-size-max")) {
            o_log_size_max = atoll(v);
        } else if (VAL("--conmon-pidfile")) {
            o_monitor_pidfile = v;
        } else if (VAL("--socket-dir-path")) {
            o_socket_dir = v;
        } else if (VAL("--runtime-arg")) {
            if (n_runtime_args == MAX_RUNTIME_ARGS) {
                say("too many --runtime-arg");
                exit(1);
            }
            o_runtime_args[n_runtime_args++] = v;
        } else {
            say("unknown option %s", a);
            exit(1);
        }
#undef VAL
    }
    if (!o_cid || !o_runtime || !o_bundle || !o_pidfile || !o_exit_dir || !o_log
        || !o_socket_dir) {
        say("needs -c, -r, -b, -p, --exit-dir, -l and --socket-dir-path");
        exit(1);
    }
}

/* Until runc create ends: take the pty it hands over; then report the
 * container's pid (or runc's error, and exit) on the sync pipe. */
static void await_runtime(int sfd, int cs_fd) {
    while (!runtime_done) {
        struct pollfd p[2] = {{sfd, POLLIN, 0}, {cs_fd, POLLIN, 0}};
        int np = cs_fd >= 0 ? 2 : 1;
        if (poll(p, (nfds_t)np, -1) < 0 && errno != EINTR)
            fail("poll: %s", strerror(errno));
        if (np == 2 && (p[1].revents & POLLIN)) {
            accept_console(cs_fd, csname);
            if (out_fd >= 0) {
                close(cs_fd);
                cs_fd = -1;
            }
        }
        if (p[0].revents & POLLIN)
            on_signal(sfd);
    }
    if (cs_fd >= 0)
        close(cs_fd);
    if (csname[0])
        (void)unlink(csname);
    csname[0] = '\0';
    (void)fcntl(err_fd, F_SETFL, O_NONBLOCK);
    if (!WIFEXITED(runtime_status) || WEXITSTATUS(runtime_status) != 0) {
        char *buf = errbuf;
        ssize_t n = read(err_fd, buf, sizeof errbuf - 1);
        buf[n > 0 ? n : 0] = '\0';
        say("runtime stderr: %s", buf);
        cleanup_symlink();
        report(-1, buf);
        exit(1);
    }
    if (o_terminal && out_fd < 0)
        fail("Runtime did not set up terminal");
    char pidbuf[32];
    int pfd = open(o_pidfile, O_RDONLY | O_CLOEXEC);
    ssize_t pn = pfd >= 0 ? read(pfd, pidbuf, sizeof pidbuf - 1) : -1;
    if (pfd >= 0)
        close(pfd);
    int err = errno;
    if (pn > 0)
        pidbuf[pn] = '\0';
    if (pn <= 0 || atoi(pidbuf) <= 0) {
        char *buf = errbuf;
        ssize_t n = read(err_fd, buf, sizeof errbuf - 1);
        buf[n > 0 ? n : 0] = '\0';
        fail("Failed to read pidfile: %s", n > 0 ? buf : pn < 0 ? strerror(err) : "no pid");
    }
    container_pid = atoi(pidbuf);
    report(container_pid, NULL);
    for (int i = 0; i < n_early; i++)
        if (early_pid[i] == container_pid) {
            container_status = early_status[i];
            container_done = 1;
        }
}

/* The monitor proper: output to the log and the clients, input from
 * the clients, commands from the fifo, until the init exits. */
static void monitor(int sfd) {
    static char pend[SOCK_BUF];
    size_t pend_len = 0, pend_off = 0;
    struct timespec hup_until = {0, 0};
    while (!container_done) {
        struct pollfd p[6 + MAX_CLIENTS];
        int np = 0, i_sig, i_ctl, i_att, i_out = -1, i_err = -1, i_in = -1, i_cl;
        int timeout = -1;
        if (in_fd < 0)
            pend_len = pend_off = 0; /* the input was closed: nothing waits for it */
        i_sig = np, p[np++] = (struct pollfd){sfd, POLLIN, 0};
        i_ctl = np, p[np++] = (struct pollfd){ctl_fd, POLLIN, 0};
        i_att = np, p[np++] = (struct pollfd){attach_fd, POLLIN, 0};
        if (out_fd >= 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long long left = (hup_until.tv_sec - now.tv_sec) * 1000LL
                             + (hup_until.tv_nsec - now.tv_nsec) / 1000000;
            if (left <= 0)
                i_out = np, p[np++] = (struct pollfd){out_fd, POLLIN, 0};
            else
                timeout = (int)left + 1;
        }
        if (err_fd >= 0)
            i_err = np, p[np++] = (struct pollfd){err_fd, POLLIN, 0};
        if (pend_len > pend_off && in_fd >= 0)
            i_in = np, p[np++] = (struct pollfd){in_fd, POLLOUT, 0};
        i_cl = np;
        if (pend_len == pend_off)
            for (int c = 0; c < n_clients; c++)
                p[np++] = (struct pollfd){clients[c], POLLIN, 0};
        if (poll(p, (nfds_t)np, timeout) < 0) {
            if (errno == EINTR)
                continue;
            fail("poll: %s", strerror(errno));
        }
        if (p[i_sig].revents)
            on_signal(sfd);
        if (p[i_ctl].revents & POLLIN)
            read_ctl();
        if (p[i_att].revents & POLLIN) {
            int c = accept4(attach_fd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0 && n_clients < MAX_CLIENTS)
                clients[n_clients++] = c;
            else if (c >= 0)
                close(c);
        }
        if (i_out >= 0 && p[i_out].revents) {
            ssize_t n = (p[i_out].revents & POLLIN) ? read_stdio(out_fd, STDOUT_PIPE) : 0;
            if (n == 0 && o_terminal) {
                /* no one has the pty's other side open: look again later */
                clock_gettime(CLOCK_MONOTONIC, &hup_until);
                hup_until.tv_nsec += 100 * 1000000L;
                if (hup_until.tv_nsec >= 1000000000L)
                    hup_until.tv_sec++, hup_until.tv_nsec -= 1000000000L;
            } else if (n == 0) {
                close(out_fd);
                out_fd = -1;
            }
        }
        if (i_err >= 0 && p[i_err].revents) {
            if (read_stdio(err_fd, STDERR_PIPE) == 0) {
                close(err_fd);
                err_fd = -1;
            }
        }
        if (i_in >= 0 && (p[i_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(in_fd, pend + pend_off, pend_len - pend_off);
            if (n > 0)
                pend_off += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                pend_off = pend_len; /* input that cannot go anywhere */
            if (pend_off == pend_len)
                pend_off = pend_len = 0;
        }
        for (int k = np - 1; k >= i_cl; k--) {
            if (!p[k].revents)
                continue;
            int c;
            for (c = 0; c < n_clients && clients[c] != p[k].fd; c++)
                ;
            if (c == n_clients)
                continue;
            ssize_t n = (p[k].revents & POLLIN) ? recv(clients[c], pend, sizeof pend, 0) : 0;
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (n <= 0) {
                drop_client(c);
                continue;
            }
            if (in_fd >= 0) {
                pend_len = (size_t)n;
                pend_off = 0;
                break; /* one client's input at a time */
            }
        }
    }

}

/* The init is gone: what it left in the pipes, then the exit file. */
static void finish(void) {
    if (out_fd >= 0) {
        (void)fcntl(out_fd, F_SETFL, O_NONBLOCK);
        while (read_stdio(out_fd, STDOUT_PIPE) > 0)
            ;
    }
    if (err_fd >= 0)
        while (read_stdio(err_fd, STDERR_PIPE) > 0)
            ;
    if (!o_no_sync_log && log_fd >= 0)
        (void)fsync(log_fd);
    for (int c = 0; c < n_clients; c++)
        close(clients[c]);
    n_clients = 0;
    /* the symlink first: once the exit file is there a new monitor of the
     * same container may make its own */
    cleanup_symlink();
    char status[16];
    char *path = pathbuf;
    snprintf(status, sizeof status, "%d", exit_status(container_status));
    snprintf(path, sizeof pathbuf, "%s/%s", o_exit_dir, o_cid);
    if (set_contents(path, status) < 0)
        say("Failed to write %s to exit file: %s", status, strerror(errno));
    reap();
}

int main(int argc, char **argv) {
    parse(argc, argv);
    umask(0022);
    oom_adjust("-1000");
    signal(SIGPIPE, SIG_IGN);
    const char *sp = getenv("_OCI_SYNCPIPE");
    if (sp && atoi(sp) > 0) {
        sync_fd = atoi(sp);
        (void)fcntl(sync_fd, F_SETFD, FD_CLOEXEC);
    }
    const char *ns = getenv("_COVE_MNTNS");
    if (ns && atoi(ns) > 2 && fcntl(atoi(ns), F_SETFD, FD_CLOEXEC) == 0)
        host_ns = atoi(ns);
    open_log();
    int null_r = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int null_w = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_r < 0 || null_w < 0) {
        say("failed to open /dev/null");
        exit(1);
    }

    /* Daemonise: the caller waits for this first process, not the monitor. */
    pid_t main_pid = fork();
    if (main_pid < 0) {
        say("fork: %s", strerror(errno));
        exit(1);
    }
    if (main_pid > 0) {
        char content[16];
        snprintf(content, sizeof content, "%d", (int)main_pid);
        if (o_monitor_pidfile && set_contents(o_monitor_pidfile, content) < 0) {
            say("Failed to write monitor pidfile: %s", strerror(errno));
            _exit(1);
        }
        _exit(0);
    }
    if (dup2(null_r, 0) < 0 || dup2(null_w, 1) < 0 || dup2(null_w, 2) < 0)
        fail("Failed to dup over stdio");
    setsid();
    /* one name for every build (the file's carries a digest): ps, tests */
    (void)prctl(PR_SET_NAME, "cove-monitor", 0, 0, 0);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        fail("Failed to set as subreaper");

    int cs_fd = -1;
    int fds[2];
    int worker_in = -1, worker_out = -1, worker_err;
    if (o_terminal) {
        cs_fd = console_socket(csname, sizeof csname);
    } else {
        if (o_stdin) {
            if (pipe2(fds, O_CLOEXEC) < 0)
                fail("Failed to create stdin pipe");
            in_fd = fds[1];
            worker_in = fds[0];
            (void)fcntl(in_fd, F_SETFL, O_NONBLOCK);
        }
        if (pipe2(fds, O_CLOEXEC) < 0)
            fail("Failed to create stdout pipe");
        out_fd = fds[0];
        worker_out = fds[1];
    }
    /* always: runc's own errors come here before a terminal exists */
    if (pipe2(fds, O_CLOEXEC) < 0)
        fail("Failed to create stderr pipe");
    err_fd = fds[0];
    worker_err = fds[1];
    setup_attach();
    setup_ctl();

    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGQUIT);
    if (sigprocmask(SIG_BLOCK, &mask, &old) < 0)
        fail("Failed to block signals");
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0)
        fail("Failed to create signalfd");

    const char *rargv[MAX_RUNTIME_ARGS + 12];
    int ra = 0;
    rargv[ra++] = o_runtime;
    for (int i = 0; i < n_runtime_args; i++)
        rargv[ra++] = o_runtime_args[i];
    rargv[ra++] = "create";
    rargv[ra++] = "--bundle";
    rargv[ra++] = o_bundle;
    rargv[ra++] = "--pid-file";
    rargv[ra++] = o_pidfile;
    if (o_terminal) {
        rargv[ra++] = "--console-socket";
        rargv[ra++] = csname;
    }
    rargv[ra++] = o_cid;
    rargv[ra] = NULL;

    create_pid = fork();
    if (create_pid < 0)
        fail("Failed to fork the create command");
    if (create_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        sigprocmask(SIG_SETMASK, &old, NULL);
        signal(SIGPIPE, SIG_DFL);
        int in = worker_in >= 0 ? worker_in : null_r;
        int out = worker_out >= 0 ? worker_out : null_w;
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(worker_err, 2) < 0)
            _exit(127);
        /* the container's user may reopen /dev/stdout (conmon does the same) */
        if (worker_in >= 0)
            (void)fchmod(0, 0777);
        if (worker_out >= 0)
            (void)fchmod(1, 0777);
        (void)fchmod(2, 0777);
        oom_adjust("0");
        execv(o_runtime, (char *const *)rargv);
        _exit(127);
    }
    if (worker_in >= 0)
        close(worker_in);
    if (worker_out >= 0)
        close(worker_out);
    close(worker_err);

    await_runtime(sfd, cs_fd);
    leave_create_ns();
    if (!container_done)
        reap();
    if (out_fd >= 0 && !o_terminal)
        (void)fcntl(out_fd, F_SETFL, O_NONBLOCK);

    monitor(sfd);
    finish();
    return 0;
}
