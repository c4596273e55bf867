/* cove-monitor: the monitor of many containers, in place of a conmon each
 * (see _monitor.py).
 *
 * ``cove-monitor --serve FD STATE_DIR``: FD is coved's end of a
 * SOCK_SEQPACKET socket pair (a pair, not a named socket: nothing on disk to
 * leave behind, and no one but coved can ask); STATE_DIR only names the cove
 * root on the command line (ps, tests). Each packet coved sends is one
 * container's create: the part of conmon's command line cove passes,
 * NUL-separated, with two fds (SCM_RIGHTS): the sync pipe's write end and
 * the mount namespace of coved's creating thread, which holds the rootfs
 * (host/freshns.py). For each container it keeps conmon's files and
 * protocols: the JSON line on the sync pipe ({"data": PID} or {"data": -1,
 * "message": ...}), the k8s-file log with its size cap, the attach socket
 * (SOCK_SEQPACKET at <bundle>/attach, reached through the symlink <socket
 * dir>/<cid>; packets out are one byte of stream type, 2 stdout or 3
 * stderr, and the data; packets in are raw input), the ``ctl`` fifo in the
 * bundle ("1 H W" resize, "2 0 0" reopen the log) and the exit file <exit
 * dir>/<cid> holding the init's exit code (128+N for signal N). Its own pid
 * goes to the --conmon-pidfile, which it removes as the last thing it does
 * for a container: coved's delete waits for that (not for the process).
 *
 * One epoll loop serves every container, so creates from many threads run
 * at once: runc create is a child that setns()es into the create's
 * namespace (allowed: it is single-threaded) and execs; the monitor itself
 * never enters one, so it holds no rootfs. A subreaper, it reaps the
 * inits (and runc) with waitpid(-1) and matches them by pid.
 *
 * Lifetime: coved closes the connection after K creates (or dies); the
 * monitor serves what it has to the end and exits when the last of its
 * containers is gone. No glib, no dynamic libraries (built -static when the
 * C library allows).
 */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MAX_CTRS 1024   /* coved sends 32 by default */
#define REQ_MAX 65536
#define EARLY 64

static struct ctr *ctrs[MAX_CTRS];
static int n_ctrs, n_creating, retired;
static unsigned next_gen;
static int ep = -1, conn_fd = -1, sig_fd = -1, null_r = -1, null_w = -1;
static sigset_t old_mask;
static char errbuf[STDIO_BUF];

/* Exits reaped before their container's pid was known (runc's init can
 * end before runc create does); each is matched only by a create that
 * began before it was reaped, and kept only while a create is under way. */
static struct { pid_t pid; int status; struct timespec at; } early[EARLY];
static int n_early;

static int ts_before(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* -- epoll ---------------------------------------------------------------- */

/* An event names its container by slot and generation, so that one for a
 * container freed earlier in the same batch is dropped. */
static unsigned long long tag(struct ctr *c, int kind, int fd) {
    unsigned long long slot = c ? (unsigned long long)c->slot : 0xffff;
    unsigned long long gen = c ? c->gen & 0xff : 0;
    return (unsigned)fd | slot << 32 | (unsigned long long)kind << 48 | gen << 56;
}

void ep_add(struct ctr *c, int kind, int fd, unsigned events) {
    struct epoll_event ev = {.events = events, .data.u64 = tag(c, kind, fd)};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        say("epoll_ctl: %s", strerror(errno));
}

void ep_del(int fd) {
    if (fd >= 0)
        (void)epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
}

static void close_fd(int *fd) {
    if (*fd >= 0) {
        ep_del(*fd);
        close(*fd);
    }
    *fd = -1;
}

/* -- a container's end ---------------------------------------------------- */

static void release(struct ctr *c) {
    for (int i = 0; i < c->n_clients; i++)
        close_fd(&c->clients[i]);
    close_fd(&c->cs_fd);
    close_fd(&c->in_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    close_fd(&c->attach_fd);
    close_fd(&c->ctl_fd);
    close_fd(&c->ctl_dummy);
    close_fd(&c->log_fd);
    if (c->state == C_CREATING)
        n_creating--;
    ctrs[c->slot] = NULL;
    n_ctrs--;
}

static void forget(struct ctr *c) {
    /* the last step: coved's delete waits for it */
    if (c->monitor_pidfile)
        (void)unlink(c->monitor_pidfile);
    free(c->clients);
    free(c->pend);
    free(c->ctlbuf);
    free(c->req);
    free(c);
}

/* The create failed: say why on the sync pipe; no exit file. */
static void abandon(struct ctr *c, const char *msg) {
    say("%s: %s", c->cid ? c->cid : "?", msg);
    cleanup_symlink(c); /* before the report: the caller goes on at once */
    release(c);
    if (c->monitor_pidfile)
        (void)unlink(c->monitor_pidfile);
    c->monitor_pidfile = NULL;
    report(c, -1, msg);
    forget(c);
}

static int exit_status(int status) {
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

/* The init is gone: what it left in the pipes, then the exit file. */
static void finish(struct ctr *c) {
    if (c->out_fd >= 0)
        while (read_stdio(c, c->out_fd, STDOUT_PIPE) > 0)
            ;
    if (c->err_fd >= 0)
        while (read_stdio(c, c->err_fd, STDERR_PIPE) > 0)
            ;
    if (!c->no_sync_log && c->log_fd >= 0)
        (void)fsync(c->log_fd);
    /* the symlink first: once the exit file is there a new create of the
     * same container may make its own */
    cleanup_symlink(c);
    release(c);
    char status[16], path[4200];
    snprintf(status, sizeof status, "%d", exit_status(c->status));
    snprintf(path, sizeof path, "%s/%s", c->exit_dir, c->cid);
    if (set_contents(path, status) < 0)
        say("Failed to write %s to exit file: %s", status, strerror(errno));
    forget(c);
}

/* -- options -------------------------------------------------------------- */

/* The options of one create: the part of conmon's command line cove passes. */
static int parse(struct ctr *c, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VAL(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (strcmp(a, "-t") == 0 || strcmp(a, "--terminal") == 0) {
            c->terminal = 1;
        } else if (strcmp(a, "-i") == 0 || strcmp(a, "--stdin") == 0) {
            c->stdin_ = 1;
        } else if (strcmp(a, "--leave-stdin-open") == 0) {
            c->leave_stdin_open = 1;
        } else if (strcmp(a, "--no-sync-log") == 0) {
            c->no_sync_log = 1;
        } else if (VAL("--api-version") || VAL("-u") || VAL("-n") || VAL("--log-level")) {
            /* conmon's: cove's monitor speaks API 1 and has one name */
        } else if (VAL("-c")) {
            c->cid = v;
        } else if (VAL("-r")) {
            c->runtime = v;
        } else if (VAL("-b")) {
            c->bundle = v;
        } else if (VAL("-p")) {
            c->pidfile = v;
        } else if (VAL("--exit-dir")) {
            c->exit_dir = v;
        } else if (VAL("-l")) {
            c->log = strncmp(v, "k8s-file:", 9) == 0 ? v + 9 : v;
        } else if (VAL("--log-size-max")) {
            c->log_size_max = atoll(v);
        } else if (VAL("--conmon-pidfile")) {
            c->monitor_pidfile = v;
        } else if (VAL("--socket-dir-path")) {
            c->socket_dir = v;
        } else if (VAL("--runtime-arg")) {
            if (c->n_runtime_args == MAX_RUNTIME_ARGS)
                return err("too many --runtime-arg");
            c->runtime_args[c->n_runtime_args++] = v;
        } else {
            return err("unknown option %s", a);
        }
#undef VAL
    }
    if (!c->cid || !c->runtime || !c->bundle || !c->pidfile || !c->exit_dir || !c->log
        || !c->socket_dir)
        return err("needs -c, -r, -b, -p, --exit-dir, -l and --socket-dir-path");
    return 0;
}

/* -- a create ------------------------------------------------------------- */

/* In the child: runc create in the creating thread's mount namespace. */
static void exec_runtime(struct ctr *c, int ns, int in, int out, int errw) {
    const char *rargv[MAX_RUNTIME_ARGS + 12];
    int ra = 0;
    rargv[ra++] = c->runtime;
    for (int i = 0; i < c->n_runtime_args; i++)
        rargv[ra++] = c->runtime_args[i];
    rargv[ra++] = "create";
    rargv[ra++] = "--bundle";
    rargv[ra++] = c->bundle;
    rargv[ra++] = "--pid-file";
    rargv[ra++] = c->pidfile;
    if (c->terminal) {
        rargv[ra++] = "--console-socket";
        rargv[ra++] = c->csname;
    }
    rargv[ra++] = c->cid;
    rargv[ra] = NULL;
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    signal(SIGPIPE, SIG_DFL);
    if (ns >= 0 && setns(ns, CLONE_NEWNS) < 0) {
        dprintf(errw, "cove-monitor: entering the create's mount namespace: %s\n",
                strerror(errno));
        _exit(126);
    }
    if (chdir(c->bundle) < 0) {
        dprintf(errw, "cove-monitor: bundle %s: %s\n", c->bundle, strerror(errno));
        _exit(126);
    }
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(errw, 2) < 0)
        _exit(127);
    /* the container's user may reopen /dev/stdout (conmon does the same) */
    if (in != null_r)
        (void)fchmod(0, 0777);
    if (out != null_w)
        (void)fchmod(1, 0777);
    (void)fchmod(2, 0777);
    oom_adjust("0");
    execv(c->runtime, (char *const *)rargv);
    _exit(127);
}

static int start(struct ctr *c, int ns) {
    int fds[2], worker_in = -1, worker_out = -1, worker_err = -1;
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (c->monitor_pidfile && set_contents(c->monitor_pidfile, pid) < 0)
        return err("Failed to write monitor pidfile: %s", strerror(errno));
    if (open_log(c) < 0)
        return -1;
    if (c->terminal) {
        if (console_socket(c) < 0)
            return -1;
    } else {
        if (c->stdin_) {
            if (pipe2(fds, O_CLOEXEC) < 0)
                return err("Failed to create stdin pipe");
            c->in_fd = fds[1];
            worker_in = fds[0];
            (void)fcntl(c->in_fd, F_SETFL, O_NONBLOCK);
        }
        if (pipe2(fds, O_CLOEXEC) < 0) {
            if (worker_in >= 0)
                close(worker_in);
            return err("Failed to create stdout pipe");
        }
        c->out_fd = fds[0];
        worker_out = fds[1];
        (void)fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
    }
    /* always: runc's own errors come here before a terminal exists */
    int r = pipe2(fds, O_CLOEXEC);
    if (r == 0) {
        c->err_fd = fds[0];
        worker_err = fds[1];
        (void)fcntl(c->err_fd, F_SETFL, O_NONBLOCK);
    }
    if (r < 0)
        r = err("Failed to create stderr pipe");
    else if (setup_attach(c) < 0 || setup_ctl(c) < 0)
        r = -1;
    else if ((c->create_pid = fork()) < 0)
        r = err("Failed to fork the create command");
    else if (c->create_pid == 0)
        exec_runtime(c, ns, worker_in >= 0 ? worker_in : null_r,
                     worker_out >= 0 ? worker_out : null_w, worker_err);
    if (worker_in >= 0)
        close(worker_in);
    if (worker_out >= 0)
        close(worker_out);
    if (worker_err >= 0)
        close(worker_err);
    if (r < 0)
        return -1;
    if (c->cs_fd >= 0)
        ep_add(c, K_CS, c->cs_fd, EPOLLIN);
    return 0;
}

/* A create request from coved. */
static void on_request(void) {
    static char req[REQ_MAX];
    char cbuf[CMSG_SPACE(4 * sizeof(int))];
    struct iovec iov = {req, sizeof req - 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(conn_fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* coved closed it (retired us) or is gone */
        close_fd(&conn_fd);
        retired = 1;
        return;
    }
    int fds[4] = {-1, -1, -1, -1}, nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            memcpy(fds, CMSG_DATA(cm), (size_t)nfds * sizeof(int));
        }
    for (int i = 2; i < nfds; i++)
        close(fds[i]);
    int sync = fds[0], ns = fds[1];
    struct ctr *c = calloc(1, sizeof *c);
    int slot = 0;
    while (slot < MAX_CTRS && ctrs[slot])
        slot++;
    if (c == NULL || slot == MAX_CTRS || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        struct ctr tmp = {.sync_fd = sync};
        report(&tmp, -1, c ? "the monitor is full, or the request too long" : "out of memory");
        free(c);
        if (ns >= 0)
            close(ns);
        return;
    }
    *c = (struct ctr){.gen = ++next_gen, .slot = slot, .log_size_max = -1, .state = C_CREATING,
                      .sync_fd = sync, .log_fd = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1,
                      .attach_fd = -1, .ctl_fd = -1, .ctl_dummy = -1, .cs_fd = -1,
                      .create_pid = -1, .pid = -1};
    ctrs[slot] = c;
    n_ctrs++;
    n_creating++;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    char *argv[128];
    int argc = 0;
    c->req = malloc((size_t)n + 1);
    if (c->req != NULL) {
        memcpy(c->req, req, (size_t)n);
        c->req[n] = '\0';
        for (char *p = c->req; p < c->req + n && argc < 128; p += strlen(p) + 1)
            argv[argc++] = p;
    }
    if (c->req == NULL)
        abandon(c, "out of memory");
    else if (parse(c, argc, argv) < 0 || start(c, ns) < 0)
        abandon(c, errmsg);
    if (ns >= 0)
        close(ns);
}

/* runc create ended: the container's pid on the sync pipe, or why not. */
static void created(struct ctr *c) {
    if (c->terminal && c->out_fd < 0)
        accept_console(c); /* its pty may still wait in the socket's queue */
    close_fd(&c->cs_fd);
    if (c->csname) {
        (void)unlink(c->csname);
        free(c->csname);
        c->csname = NULL;
    }
    n_creating--;
    c->state = C_RUNNING;
    if (!WIFEXITED(c->create_status) || WEXITSTATUS(c->create_status) != 0) {
        ssize_t n = read(c->err_fd, errbuf, sizeof errbuf - 1);
        errbuf[n > 0 ? n : 0] = '\0';
        abandon(c, errbuf);
        return;
    }
    if (c->terminal && c->out_fd < 0) {
        abandon(c, "Runtime did not set up terminal");
        return;
    }
    char pidbuf[32];
    int pfd = open(c->pidfile, O_RDONLY | O_CLOEXEC);
    ssize_t pn = pfd >= 0 ? read(pfd, pidbuf, sizeof pidbuf - 1) : -1;
    int e = errno;
    if (pfd >= 0)
        close(pfd);
    if (pn > 0)
        pidbuf[pn] = '\0';
    if (pn <= 0 || atoi(pidbuf) <= 0) {
        ssize_t n = read(c->err_fd, errbuf, sizeof errbuf - 1);
        errbuf[n > 0 ? n : 0] = '\0';
        err("Failed to read pidfile: %s", n > 0 ? errbuf : pn < 0 ? strerror(e) : "no pid");
        abandon(c, errmsg);
        return;
    }
    c->pid = atoi(pidbuf);
    report(c, c->pid, NULL);
    for (int i = 0; i < n_early; i++)
        if (early[i].pid == c->pid && !ts_before(&early[i].at, &c->started)) {
            c->status = early[i].status;
            c->done = 1;
            early[i] = early[--n_early];
            break;
        }
    if (c->out_fd >= 0)
        ep_add(c, K_OUT, c->out_fd, EPOLLIN);
    if (c->err_fd >= 0)
        ep_add(c, K_ERR, c->err_fd, EPOLLIN);
    ep_add(c, K_ATT, c->attach_fd, EPOLLIN);
    ep_add(c, K_CTL, c->ctl_fd, EPOLLIN);
}

/* -- children ------------------------------------------------------------- */

static void reap(void) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0) {
            /* ECHILD: an init that is not our child; gone is gone */
            for (int i = 0; i < MAX_CTRS; i++) {
                struct ctr *c = ctrs[i];
                if (c && c->state == C_RUNNING && c->pid > 0 && !c->done
                    && kill(c->pid, 0) < 0 && errno == ESRCH)
                    c->status = 0, c->done = 1;
            }
            break;
        }
        if (pid == 0)
            break;
        int found = 0;
        for (int i = 0; i < MAX_CTRS && !found; i++) {
            struct ctr *c = ctrs[i];
            if (c && c->state == C_CREATING && c->create_pid == pid)
                c->create_status = status, c->create_done = found = 1;
            else if (c && c->state == C_RUNNING && c->pid == pid)
                c->status = status, c->done = found = 1;
        }
        if (!found && n_creating > 0) {
            if (n_early == EARLY)
                memmove(early, early + 1, sizeof early[0] * (size_t)--n_early);
            early[n_early].pid = pid;
            early[n_early].status = status;
            clock_gettime(CLOCK_MONOTONIC, &early[n_early++].at);
        }
    }
    for (int i = 0; i < MAX_CTRS; i++) {
        struct ctr *c = ctrs[i];
        if (c && c->state == C_CREATING && c->create_done)
            created(c);
        c = ctrs[i];
        if (c && c->state == C_RUNNING && c->done)
            finish(c);
    }
    if (n_creating == 0)
        n_early = 0;
}

static void on_signal(void) {
    struct signalfd_siginfo si;
    while (read(sig_fd, &si, sizeof si) == (ssize_t)sizeof si)
        ;
    reap();
}

/* -- input from attach clients -------------------------------------------- */

static void drop_client(struct ctr *c, int i) {
    close_fd(&c->clients[i]);
    c->clients[i] = c->clients[--c->n_clients];
    if (c->stdin_ && !c->leave_stdin_open)
        close_fd(&c->in_fd);
}

/* Input waiting for the container: watch its stdin for room and stop
 * reading clients (one client's input at a time, as conmon), or back. */
static void input_waits(struct ctr *c, int on) {
    if (on == c->in_waiting)
        return;
    c->in_waiting = on;
    for (int i = 0; i < c->n_clients; i++)
        if (on)
            ep_del(c->clients[i]);
        else
            ep_add(c, K_CLIENT, c->clients[i], EPOLLIN);
    if (on)
        ep_add(c, K_IN, c->in_fd, EPOLLOUT);
    else
        ep_del(c->in_fd);
}

static void write_input(struct ctr *c, const char *data, size_t len) {
    ssize_t n = write(c->in_fd, data, len);
    if (n < 0 && errno != EAGAIN && errno != EINTR)
        n = (ssize_t)len; /* input that cannot go anywhere */
    size_t left = len - (size_t)(n > 0 ? n : 0);
    free(c->pend);
    c->pend = NULL;
    c->pend_len = c->pend_off = 0;
    if (left > 0 && (c->pend = malloc(left)) != NULL) {
        memcpy(c->pend, data + (len - left), left);
        c->pend_len = left;
    }
    input_waits(c, c->pend != NULL);
}

static void on_client(struct ctr *c, int fd, unsigned events) {
    static char buf[SOCK_BUF];
    int i;
    for (i = 0; i < c->n_clients && c->clients[i] != fd; i++)
        ;
    if (i == c->n_clients || c->in_waiting)
        return;
    ssize_t n = (events & EPOLLIN) ? recv(fd, buf, sizeof buf, MSG_DONTWAIT) : 0;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0)
        drop_client(c, i);
    else if (c->in_fd >= 0)
        write_input(c, buf, (size_t)n);
}

static void on_attach(struct ctr *c) {
    int fd = accept4(c->attach_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (c->clients == NULL)
        c->clients = malloc(MAX_CLIENTS * sizeof(int));
    if (c->clients == NULL || c->n_clients == MAX_CLIENTS) {
        close(fd);
        return;
    }
    c->clients[c->n_clients++] = fd;
    if (!c->in_waiting)
        ep_add(c, K_CLIENT, fd, EPOLLIN);
}

/* -- the loop ------------------------------------------------------------- */

static void on_output(struct ctr *c, int kind, unsigned events) {
    int *fd = kind == K_OUT ? &c->out_fd : &c->err_fd;
    ssize_t n = (events & EPOLLIN) ? read_stdio(c, *fd, kind == K_OUT ? STDOUT_PIPE
                                                                       : STDERR_PIPE) : 0;
    if (n != 0)
        return;
    if (kind == K_OUT && c->terminal) {
        /* no one has the pty's other side open: look again later */
        ep_del(c->out_fd);
        c->out_paused = 1;
        clock_gettime(CLOCK_MONOTONIC, &c->hup_until);
        c->hup_until.tv_nsec += 100 * 1000000L;
        if (c->hup_until.tv_nsec >= 1000000000L)
            c->hup_until.tv_sec++, c->hup_until.tv_nsec -= 1000000000L;
    } else {
        close_fd(fd);
    }
}

static void dispatch(struct epoll_event *ev) {
    unsigned long long t = ev->data.u64;
    int fd = (int)(t & 0xffffffffu), slot = (int)(t >> 32 & 0xffff), kind = (int)(t >> 48 & 0xff);
    if (kind == K_CONN) {
        on_request();
        return;
    }
    if (kind == K_SIG) {
        on_signal();
        return;
    }
    struct ctr *c = slot < MAX_CTRS ? ctrs[slot] : NULL;
    if (c == NULL || (c->gen & 0xff) != (t >> 56))
        return;
    switch (kind) {
    case K_CS: accept_console(c); break;
    case K_OUT: case K_ERR: on_output(c, kind, ev->events); break;
    case K_CTL: read_ctl(c); break;
    case K_ATT: on_attach(c); break;
    case K_CLIENT: on_client(c, fd, ev->events); break;
    case K_IN:
        if (c->pend && c->in_fd >= 0) {
            char *p = c->pend;
            c->pend = NULL;
            write_input(c, p + c->pend_off, c->pend_len - c->pend_off);
            free(p);
        }
        break;
    }
}

/* Milliseconds until the next paused pty is looked at again (-1: none);
 * those whose time has come are watched again. */
static int resume_paused(void) {
    struct timespec now;
    long long next = -1;
    clock_gettime(CLOCK_MONOTONIC, &now);
    for (int i = 0; i < MAX_CTRS; i++) {
        struct ctr *c = ctrs[i];
        if (!c || !c->out_paused)
            continue;
        long long left = (c->hup_until.tv_sec - now.tv_sec) * 1000LL
                         + (c->hup_until.tv_nsec - now.tv_nsec) / 1000000;
        if (left <= 0) {
            c->out_paused = 0;
            ep_add(c, K_OUT, c->out_fd, EPOLLIN);
        } else if (next < 0 || left + 1 < next) {
            next = left + 1;
        }
    }
    return (int)next;
}

static int serve(int conn, const char *mntns) {
    conn_fd = conn;
    umask(0022);
    oom_adjust("-1000");
    signal(SIGPIPE, SIG_IGN);
    /* started by a create's thread, in its namespace: to coved's own */
    int host_ns = mntns ? atoi(mntns) : -1;
    (void)unsetenv("_COVE_MNTNS");
    if (host_ns > 2) {
        if (setns(host_ns, CLONE_NEWNS) < 0)
            say("leaving the create's mount namespace: %s", strerror(errno));
        close(host_ns);
    }
    null_r = open("/dev/null", O_RDONLY | O_CLOEXEC);
    null_w = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_r < 0 || null_w < 0 || dup2(null_r, 0) < 0 || dup2(null_w, 1) < 0
        || dup2(null_w, 2) < 0)
        return 1;
    (void)setsid();
    /* one name for every build (the file's carries a digest): ps, tests */
    (void)prctl(PR_SET_NAME, "cove-monitor", 0, 0, 0);
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0
        || sigprocmask(SIG_BLOCK, &mask, &old_mask) < 0
        || (sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0
        || fcntl(conn_fd, F_SETFD, FD_CLOEXEC) < 0)
        return 1;
    ep_add(NULL, K_CONN, conn_fd, EPOLLIN);
    ep_add(NULL, K_SIG, sig_fd, EPOLLIN);
    struct epoll_event evs[64];
    while (!retired || n_ctrs > 0) {
        int n = epoll_wait(ep, evs, 64, resume_paused());
        if (n < 0 && errno != EINTR)
            return 1;
        for (int i = 0; i < n; i++)
            dispatch(&evs[i]);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        puts(VERSION);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "--serve") == 0 && atoi(argv[2]) > 2)
        return serve(atoi(argv[2]), getenv("_COVE_MNTNS"));
    say("usage: cove-monitor --serve FD [STATE_DIR] | --version");
    return 1;
}
