/* cove-monitor: what its files share (see monitor.c for the design). */
#ifndef COVE_MONITOR_H
#define COVE_MONITOR_H

#define _GNU_SOURCE
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#define VERSION "cove-monitor 2"
#define STDIO_BUF 8192        /* conmon's STDIO_BUF_SIZE: one read, one packet */
#define SOCK_BUF 32768        /* conmon's CONN_SOCK_BUF_SIZE: one client read */
#define MAX_CLIENTS 32
#define MAX_RUNTIME_ARGS 16
#define STDOUT_PIPE 2
#define STDERR_PIPE 3

enum { C_CREATING, C_RUNNING };

/* One container. Small while it runs idle: its buffers (input that waits
 * for the container, a partial ctl line, the client list) are allocated
 * when used. */
struct ctr {
    unsigned gen;    /* tells this container's epoll events from an older one's in its slot */
    int slot;
    char *req;       /* the create request: the options below point into it */
    const char *cid, *runtime, *bundle, *pidfile, *exit_dir, *log, *monitor_pidfile;
    const char *socket_dir;
    const char *runtime_args[MAX_RUNTIME_ARGS];
    int n_runtime_args;
    long long log_size_max;
    int terminal, stdin_, leave_stdin_open, no_sync_log;

    int state;
    int sync_fd, log_fd;
    long long log_written;
    int in_fd, out_fd, err_fd, attach_fd, ctl_fd, ctl_dummy, cs_fd;
    int *clients, n_clients;
    char *symlink_path;  /* the attach symlink while it is ours */
    ino_t symlink_ino;
    char *csname;        /* the console socket, until runc has connected */
    pid_t create_pid, pid;
    int create_status, create_done, status, done;
    struct timespec started;  /* CLOCK_MONOTONIC, when its create began */
    char *pend;               /* client input the container has not read yet */
    size_t pend_len, pend_off;
    int in_waiting;           /* in_fd is watched for room, the clients are not */
    struct timespec hup_until; /* the pty had no other side: look again then */
    int out_paused;
    char *ctlbuf;
    size_t ctl_have;
};

/* mon_io.c */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int write_all(int fd, const void *buf, size_t len);
int set_contents(const char *path, const char *data);
void oom_adjust(const char *value);
void report(struct ctr *c, int res, const char *message);
int open_log(struct ctr *c);
void write_log(struct ctr *c, int pipe, const char *buf, size_t len);
int setup_attach(struct ctr *c);
int setup_ctl(struct ctr *c);
int console_socket(struct ctr *c);
void accept_console(struct ctr *c);
void read_ctl(struct ctr *c);
void cleanup_symlink(struct ctr *c);
ssize_t read_stdio(struct ctr *c, int fd, int pipe);
void to_clients(struct ctr *c, const char *packet, size_t len);
extern char errmsg[1024];
int err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* monitor.c: the event loop's bookkeeping, which mon_io.c's client code uses */
enum { K_CONN = 1, K_SIG, K_CS, K_OUT, K_ERR, K_IN, K_ATT, K_CTL, K_CLIENT };
void ep_add(struct ctr *c, int kind, int fd, unsigned events);
void ep_del(int fd);

#endif
