/*
 * cove-nsexec: run a command inside a running container, as `runc exec` does
 * for cove's containers, without starting a Go runtime (~1 ms, not ~29 ms).
 *
 * cove-nsexec --pid PID --start-time TICKS --uid U --gid G [--groups G1,G2]
 *             [--cwd DIR] [--caps cap_chown,...] [--cgroup DIR ...]
 *             [--env K=V ...] [--rlimit RLIMIT_NOFILE=SOFT:HARD ...]
 *             [--keyring NAME] [--no-new-privs]
 *             [--tty --console-socket FD [--tty-size COLSxROWS]] -- ARGV...
 *
 * The parent (it stays outside the container's pid namespace, like runc's):
 *   1. opens /proc/PID, refuses a PID whose start time (field 22 of stat) is
 *      not TICKS (a reused pid) or that is a zombie, and opens its
 *      namespaces and root through that directory before any setns; then
 *      opens each DIR (the container's cgroups, host paths): a cgroup v2
 *      directory for CLONE_INTO_CGROUP, and its cgroup.procs in case the
 *      kernel cannot; a v1 one's tasks file;
 *   2. joins the ipc, uts, net, pid and mount namespaces (mount last) and
 *      chroots into the container's root (fchdir + chroot ".");
 *   3. forks (clone3 into the cgroup v2 directory), forwards every signal it
 *      can catch to the child, and exits with the child's exit code, or
 *      128+N if a signal N killed it.
 * The child (in the container's pid namespace):
 *   4. moves itself into the container's other cgroups (so the limits apply
 *      to it and to what it forks; the parent stays out, so it costs the
 *      container no pid) and then into its cgroup namespace;
 *   5. --tty: opens a pty in the container's own devpts (so `tty` names it),
 *      sends the master to the caller over the console socket (SCM_RIGHTS),
 *      makes the slave its controlling terminal and stdio. Always setsid();
 *   6. closes every fd but 0, 1, 2; sets the rlimits; joins the session
 *      keyring NAME (not coved's); drops the bounding set to --caps; hands
 *      stdio to the user (uid only, as runc); chdir(cwd) (as root, then as
 *      the user if root may not); setgroups, setresgid, setresuid; root keeps
 *      --caps as effective/permitted, anyone else ends with none; the
 *      inheritable and ambient sets are emptied;
 *   7. replaces the environment with the --env list and execs ARGV[0],
 *      searched in that environment's PATH.
 * Exit codes: the command's own; 126 if the cwd is missing or the command
 * is not executable, 127 if it is not found (each with a message on
 * stderr, as a shell prints it); 255 if the container could not be entered.
 *
 * Both processes are non-dumpable, so nothing in the container can open
 * /proc/<child>/exe or its fds before the command replaces this image.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define PROG "cove"
#define EXIT_SETUP 255
#define EXIT_NOEXEC 126
#define EXIT_NOTFOUND 127
#define NSEXEC_VERSION "1"

/* clone3(2) and CLONE_INTO_CGROUP (Linux 5.7), declared here: glibc has no
 * wrapper and <linux/sched.h> clashes with <sched.h> on some versions. */
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#define COVE_CLONE_INTO_CGROUP 0x200000000ULL
#define COVE_CGROUP2_MAGIC 0x63677270
struct cove_clone_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack,
		stack_size, tls, set_tid, set_tid_size, cgroup;
};

#ifndef KEYCTL_JOIN_SESSION_KEYRING
#define KEYCTL_JOIN_SESSION_KEYRING 1
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

extern char **environ;

static const char *const cap_names[] = {
	"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill",
	"setgid", "setuid", "setpcap", "linux_immutable", "net_bind_service",
	"net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
	"sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
	"sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time",
	"sys_tty_config", "mknod", "lease", "audit_write", "audit_control",
	"setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
	"block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
};
#define N_CAP_NAMES (sizeof(cap_names) / sizeof(cap_names[0]))

static const struct {
	const char *name;
	int resource;
} rlimit_names[] = {
	{"cpu", RLIMIT_CPU}, {"fsize", RLIMIT_FSIZE}, {"data", RLIMIT_DATA},
	{"stack", RLIMIT_STACK}, {"core", RLIMIT_CORE}, {"rss", RLIMIT_RSS},
	{"nproc", RLIMIT_NPROC}, {"nofile", RLIMIT_NOFILE},
	{"memlock", RLIMIT_MEMLOCK}, {"as", RLIMIT_AS}, {"locks", RLIMIT_LOCKS},
	{"sigpending", RLIMIT_SIGPENDING}, {"msgqueue", RLIMIT_MSGQUEUE},
	{"nice", RLIMIT_NICE}, {"rtprio", RLIMIT_RTPRIO}, {"rttime", RLIMIT_RTTIME},
};
#define N_RLIMIT_NAMES (sizeof(rlimit_names) / sizeof(rlimit_names[0]))

struct rlimit_opt {
	int resource;
	struct rlimit limit;
};

struct opts {
	pid_t pid;
	unsigned long long start_time;
	int have_start_time;
	uid_t uid;
	gid_t gid;
	int have_uid, have_gid;
	gid_t *groups;
	size_t ngroups;
	const char *cwd;
	uint64_t caps;
	const char **cgroups;
	size_t ncgroups;
	char **env;
	size_t nenv;
	struct rlimit_opt *rlimits;
	size_t nrlimits;
	int tty;
	int console_fd;
	unsigned short cols, rows;
	const char *keyring;
	int no_new_privs;
	char **argv;
};

/* ---- messages --------------------------------------------------------------- */

static void vmsg(const char *fmt, va_list ap, int err)
{
	char buf[1024];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n < 0)
		return;
	if (err)
		dprintf(STDERR_FILENO, PROG ": %s: %s\n", buf, strerror(err));
	else
		dprintf(STDERR_FILENO, PROG ": %s\n", buf);
}

__attribute__((noreturn, format(printf, 2, 3)))
static void fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(fmt, ap, 0);
	va_end(ap);
	_exit(code);
}

/* Like fail(), with strerror(errno) appended. */
__attribute__((noreturn, format(printf, 2, 3)))
static void fail_errno(int code, const char *fmt, ...)
{
	int err = errno;
	va_list ap;
	va_start(ap, fmt);
	vmsg(fmt, ap, err);
	va_end(ap);
	_exit(code);
}

/* ---- parsing ---------------------------------------------------------------- */

static unsigned long long parse_u64(const char *s, unsigned long long max, const char *what)
{
	char *end;
	unsigned long long v;
	if (!isdigit((unsigned char)s[0]))
		fail(EXIT_SETUP, "invalid %s: '%s'", what, s);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		fail(EXIT_SETUP, "invalid %s: '%s'", what, s);
	return v;
}

static uint32_t parse_id(const char *s, const char *what)
{
	/* (uid_t)-1 means "unchanged" to the set*id calls: never a real id. */
	return (uint32_t)parse_u64(s, UINT32_MAX - 1, what);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		fail(EXIT_SETUP, "out of memory");
	return p;
}

/* Split a comma-separated list in place; returns the items (NULL-terminated). */
static char **split_commas(char *s, size_t *count)
{
	size_t n = 1, i = 0;
	char **items, *save = NULL, *tok;
	for (const char *p = s; *p; p++)
		if (*p == ',')
			n++;
	items = xcalloc(n + 1, sizeof(*items));
	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		items[i++] = tok;
	*count = i;
	return items;
}

static int cap_from_name(const char *name)
{
	if (isdigit((unsigned char)name[0]))
		return (int)parse_u64(name, 63, "capability");
	if (strncasecmp(name, "cap_", 4) == 0)
		name += 4;
	for (size_t i = 0; i < N_CAP_NAMES; i++)
		if (strcasecmp(name, cap_names[i]) == 0)
			return (int)i;
	fail(EXIT_SETUP, "unknown capability '%s'", name);
}

static void parse_caps(char *list, uint64_t *mask)
{
	size_t n;
	char **items = split_commas(list, &n);
	*mask = 0;
	for (size_t i = 0; i < n; i++)
		*mask |= UINT64_C(1) << cap_from_name(items[i]);
	free(items);
}

static void parse_groups(char *list, struct opts *o)
{
	size_t n;
	char **items = split_commas(list, &n);
	if (n > NGROUPS_MAX)
		fail(EXIT_SETUP, "too many groups");
	o->groups = xcalloc(n, sizeof(gid_t));
	for (size_t i = 0; i < n; i++)
		o->groups[i] = parse_id(items[i], "group");
	o->ngroups = n;
	free(items);
}

static rlim_t parse_rlim(const char *s)
{
	if (strcmp(s, "unlimited") == 0)
		return RLIM_INFINITY;
	return (rlim_t)parse_u64(s, ULLONG_MAX, "rlimit value");
}

/* RLIMIT_NOFILE=SOFT:HARD (or nofile=...) */
static void parse_rlimit(char *arg, struct rlimit_opt *out)
{
	char *eq = strchr(arg, '='), *colon, *name = arg;
	if (!eq || !(colon = strchr(eq + 1, ':')))
		fail(EXIT_SETUP, "invalid rlimit '%s' (want NAME=SOFT:HARD)", arg);
	*eq = '\0';
	*colon = '\0';
	if (strncasecmp(name, "rlimit_", 7) == 0)
		name += 7;
	out->resource = -1;
	for (size_t i = 0; i < N_RLIMIT_NAMES; i++)
		if (strcasecmp(name, rlimit_names[i].name) == 0)
			out->resource = rlimit_names[i].resource;
	if (out->resource < 0)
		fail(EXIT_SETUP, "unknown rlimit '%s'", arg);
	out->limit.rlim_cur = parse_rlim(eq + 1);
	out->limit.rlim_max = parse_rlim(colon + 1);
	if (out->limit.rlim_cur > out->limit.rlim_max)
		fail(EXIT_SETUP, "rlimit %s: soft limit above hard limit", name);
}

static void parse_tty_size(const char *s, struct opts *o)
{
	unsigned int cols, rows;
	char tail;
	if (sscanf(s, "%ux%u%c", &cols, &rows, &tail) != 2 || !cols || !rows ||
	    cols > USHRT_MAX || rows > USHRT_MAX)
		fail(EXIT_SETUP, "invalid --tty-size '%s' (want COLSxROWS)", s);
	o->cols = (unsigned short)cols;
	o->rows = (unsigned short)rows;
}

static void usage(void)
{
	dprintf(STDERR_FILENO,
		"usage: cove-nsexec --pid PID --start-time TICKS --uid U --gid G\n"
		"         [--groups G,...] [--cwd DIR] [--caps CAP,...] [--cgroup DIR]...\n"
		"         [--env K=V]... [--rlimit NAME=SOFT:HARD]... [--keyring NAME]\n"
		"         [--no-new-privs] [--tty --console-socket FD [--tty-size CxR]]\n"
		"         -- COMMAND [ARG]...\n");
	_exit(EXIT_SETUP);
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	enum {
		O_PID = 256, O_START, O_UID, O_GID, O_GROUPS, O_CWD, O_CAPS, O_CGROUP,
		O_ENV, O_RLIMIT, O_TTY, O_CONSOLE, O_TTYSIZE, O_KEYRING, O_NNP, O_VERSION,
	};
	static const struct option longopts[] = {
		{"pid", required_argument, NULL, O_PID},
		{"start-time", required_argument, NULL, O_START},
		{"uid", required_argument, NULL, O_UID},
		{"gid", required_argument, NULL, O_GID},
		{"groups", required_argument, NULL, O_GROUPS},
		{"cwd", required_argument, NULL, O_CWD},
		{"caps", required_argument, NULL, O_CAPS},
		{"cgroup", required_argument, NULL, O_CGROUP},
		{"env", required_argument, NULL, O_ENV},
		{"rlimit", required_argument, NULL, O_RLIMIT},
		{"tty", no_argument, NULL, O_TTY},
		{"console-socket", required_argument, NULL, O_CONSOLE},
		{"tty-size", required_argument, NULL, O_TTYSIZE},
		{"keyring", required_argument, NULL, O_KEYRING},
		{"no-new-privs", no_argument, NULL, O_NNP},
		{"version", no_argument, NULL, O_VERSION},
		{NULL, 0, NULL, 0},
	};
	size_t max = (size_t)argc;
	int c;

	memset(o, 0, sizeof(*o));
	o->console_fd = -1;
	o->cols = 80;
	o->rows = 24;
	o->cgroups = xcalloc(max, sizeof(*o->cgroups));
	o->env = xcalloc(max + 1, sizeof(*o->env));
	o->rlimits = xcalloc(max, sizeof(*o->rlimits));
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (c) {
		case O_PID:
			o->pid = (pid_t)parse_u64(optarg, INT_MAX, "pid");
			break;
		case O_START:
			o->start_time = parse_u64(optarg, ULLONG_MAX, "start time");
			o->have_start_time = 1;
			break;
		case O_UID:
			o->uid = parse_id(optarg, "uid");
			o->have_uid = 1;
			break;
		case O_GID:
			o->gid = parse_id(optarg, "gid");
			o->have_gid = 1;
			break;
		case O_GROUPS:
			free(o->groups);
			parse_groups(optarg, o);
			break;
		case O_CWD:
			if (optarg[0] != '/')
				fail(EXIT_SETUP, "--cwd must be an absolute path");
			o->cwd = optarg;
			break;
		case O_CAPS:
			parse_caps(optarg, &o->caps);
			break;
		case O_CGROUP:
			o->cgroups[o->ncgroups++] = optarg;
			break;
		case O_ENV:
			if (!strchr(optarg, '=') || optarg[0] == '=')
				fail(EXIT_SETUP, "invalid --env '%s' (want KEY=VALUE)", optarg);
			o->env[o->nenv++] = optarg;
			break;
		case O_RLIMIT:
			parse_rlimit(optarg, &o->rlimits[o->nrlimits++]);
			break;
		case O_TTY:
			o->tty = 1;
			break;
		case O_CONSOLE:
			o->console_fd = (int)parse_u64(optarg, INT_MAX, "console socket fd");
			break;
		case O_TTYSIZE:
			parse_tty_size(optarg, o);
			break;
		case O_KEYRING:
			o->keyring = optarg;
			break;
		case O_NNP:
			o->no_new_privs = 1;
			break;
		case O_VERSION:
			dprintf(STDOUT_FILENO, "cove-nsexec " NSEXEC_VERSION "\n");
			_exit(0);
		default:
			usage();
		}
	}
	if (!o->pid || !o->have_start_time || !o->have_uid || !o->have_gid || optind >= argc)
		usage();
	if (o->tty && o->console_fd < 0)
		fail(EXIT_SETUP, "--tty needs --console-socket");
	o->argv = argv + optind;
}

/* ---- the container's init ------------------------------------------------- */

/* Read /proc/PID/stat through the pid's directory: its state and start time. */
static void read_stat(int piddir, char *state, unsigned long long *start)
{
	char buf[4096], *p, *save = NULL, *tok;
	ssize_t n;
	int fd = openat(piddir, "stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail_errno(EXIT_SETUP, "the container's init is gone (stat)");
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		fail_errno(EXIT_SETUP, "the container's init is gone (stat)");
	close(fd);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
	if (!p || p[1] != ' ')
		fail(EXIT_SETUP, "unexpected /proc/PID/stat format");
	/* After ") ": field 3 (state) ... field 22 (starttime) is the 20th. */
	tok = strtok_r(p + 2, " ", &save);
	for (int field = 3; tok; field++, tok = strtok_r(NULL, " ", &save)) {
		if (field == 3)
			*state = tok[0];
		if (field == 22) {
			*start = parse_u64(tok, ULLONG_MAX, "stat start time");
			return;
		}
	}
	fail(EXIT_SETUP, "unexpected /proc/PID/stat format");
}

static void check_init(int piddir, const struct opts *o)
{
	char state = '?';
	unsigned long long start = 0;
	read_stat(piddir, &state, &start);
	if (start != o->start_time)
		fail(EXIT_SETUP, "pid %d is not the container's init any more", (int)o->pid);
	if (state == 'Z' || state == 'X')
		fail(EXIT_SETUP, "the container's init (pid %d) has exited", (int)o->pid);
}

static const struct {
	const char *name;
	int type;
} parent_ns[] = {
	{"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS}, {"net", CLONE_NEWNET},
	{"pid", CLONE_NEWPID}, {"mnt", CLONE_NEWNS}, /* mnt last */
};
#define N_PARENT_NS (sizeof(parent_ns) / sizeof(parent_ns[0]))

struct target {
	int ns[N_PARENT_NS];
	int cgroupns;
	int root;
	/* What the child writes "0" to: v1 hierarchies' tasks files, and the
	 * v2 directory's cgroup.procs when clone3 could not start it there. */
	int *cgroup_join;
	size_t ncgroups;
	int cgroup2_dir;   /* -1: none */
	int cgroup2_procs; /* -1: none, or the child was born in it */
	int last_cap;
};

static int read_last_cap(void)
{
	char buf[32];
	ssize_t n;
	int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail_errno(EXIT_SETUP, "open /proc/sys/kernel/cap_last_cap");
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		fail_errno(EXIT_SETUP, "read /proc/sys/kernel/cap_last_cap");
	close(fd);
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return (int)parse_u64(buf, 63, "cap_last_cap");
}

/* Everything is opened from the host's view, before any setns. */
static void open_target(const struct opts *o, struct target *t)
{
	char path[64];
	int piddir;

	t->last_cap = read_last_cap();
	snprintf(path, sizeof(path), "/proc/%d", (int)o->pid);
	piddir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (piddir < 0)
		fail_errno(EXIT_SETUP, "the container's init (pid %d) is gone", (int)o->pid);
	check_init(piddir, o);
	for (size_t i = 0; i < N_PARENT_NS; i++) {
		snprintf(path, sizeof(path), "ns/%s", parent_ns[i].name);
		t->ns[i] = openat(piddir, path, O_RDONLY | O_CLOEXEC);
		if (t->ns[i] < 0)
			fail_errno(EXIT_SETUP, "open /proc/%d/%s", (int)o->pid, path);
	}
	t->cgroupns = openat(piddir, "ns/cgroup", O_RDONLY | O_CLOEXEC);
	if (t->cgroupns < 0)
		fail_errno(EXIT_SETUP, "open /proc/%d/ns/cgroup", (int)o->pid);
	t->root = openat(piddir, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->root < 0)
		fail_errno(EXIT_SETUP, "open /proc/%d/root", (int)o->pid);
	/* The fds above were opened through this pid's own directory: if it is
	 * still the init now, they are the init's. */
	check_init(piddir, o);
	close(piddir);

	/* Moving a process with a write to cgroup.procs takes the kernel's
	 * global threadgroup lock for writing, which waits out an RCU grace
	 * period: 5.7 to 14 ms a write here, the larger part of an exec of
	 * `true`. A child started by clone3 into the v2 directory is never
	 * moved there, and a single-threaded writer of "0" to a v1 hierarchy's
	 * tasks file moves only itself, which the kernel does without that
	 * lock (0.05 ms). Either way the result is the same as runc's. */
	t->cgroup_join = xcalloc(o->ncgroups, sizeof(int));
	t->ncgroups = 0;
	t->cgroup2_dir = t->cgroup2_procs = -1;
	for (size_t i = 0; i < o->ncgroups; i++) {
		int dir = open(o->cgroups[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		struct statfs fs;
		int fd;
		if (dir < 0 && errno == ENOENT)
			continue; /* a hierarchy runc did not populate: as runc, skip it */
		if (dir < 0)
			fail_errno(EXIT_SETUP, "open cgroup %s", o->cgroups[i]);
		if (t->cgroup2_dir < 0 && fstatfs(dir, &fs) == 0 &&
		    fs.f_type == COVE_CGROUP2_MAGIC) {
			t->cgroup2_procs = openat(dir, "cgroup.procs", O_WRONLY | O_CLOEXEC);
			if (t->cgroup2_procs < 0)
				fail_errno(EXIT_SETUP, "open %s/cgroup.procs", o->cgroups[i]);
			t->cgroup2_dir = dir;
			continue;
		}
		fd = openat(dir, "tasks", O_WRONLY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			fd = openat(dir, "cgroup.procs", O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			fail_errno(EXIT_SETUP, "open %s/tasks", o->cgroups[i]);
		close(dir);
		t->cgroup_join[t->ncgroups++] = fd;
	}
}

/* fork(), into the cgroup v2 directory from the start when the kernel can
 * (then cgroup2_procs is closed: the child has nothing to write there). */
static pid_t fork_into_cgroup(struct target *t)
{
	if (t->cgroup2_dir >= 0) {
		struct cove_clone_args args;
		long pid;
		memset(&args, 0, sizeof(args));
		args.flags = COVE_CLONE_INTO_CGROUP;
		args.exit_signal = SIGCHLD;
		args.cgroup = (uint64_t)t->cgroup2_dir;
		pid = syscall(SYS_clone3, &args, sizeof(args));
		if (pid >= 0) {
			if (pid == 0) {
				close(t->cgroup2_procs);
				t->cgroup2_procs = -1;
			}
			return (pid_t)pid;
		}
		/* ENOSYS, E2BIG, EINVAL: an older kernel; any other error the
		 * write to cgroup.procs meets again and names. */
	}
	return fork();
}

static void enter_parent_namespaces(struct target *t)
{
	for (size_t i = 0; i < N_PARENT_NS; i++) {
		if (setns(t->ns[i], parent_ns[i].type) < 0)
			fail_errno(EXIT_SETUP, "setns(%s)", parent_ns[i].name);
		close(t->ns[i]);
		t->ns[i] = -1;
	}
	if (fchdir(t->root) < 0)
		fail_errno(EXIT_SETUP, "fchdir to the container's root");
	if (chroot(".") < 0)
		fail_errno(EXIT_SETUP, "chroot to the container's root");
	close(t->root);
	t->root = -1;
}

/* ---- the child -------------------------------------------------------------- */

static void join_cgroups(const struct target *t)
{
	/* "0" is the writer itself; the fds were opened in the host's cgroup
	 * namespace, which is what the kernel checks the move against. */
	if (t->cgroup2_procs >= 0) {
		if (write(t->cgroup2_procs, "0", 1) != 1)
			fail_errno(EXIT_SETUP, "joining the container's cgroups");
		close(t->cgroup2_procs);
	}
	if (t->cgroup2_dir >= 0)
		close(t->cgroup2_dir);
	for (size_t i = 0; i < t->ncgroups; i++) {
		if (write(t->cgroup_join[i], "0", 1) != 1)
			fail_errno(EXIT_SETUP, "joining the container's cgroups");
		close(t->cgroup_join[i]);
	}
	if (setns(t->cgroupns, CLONE_NEWCGROUP) < 0)
		fail_errno(EXIT_SETUP, "setns(cgroup)");
	close(t->cgroupns);
}

static void send_fd(int sock, int fd)
{
	char byte = 'T';
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cmsg;
	ssize_t n;

	memset(&u, 0, sizeof(u));
	cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	do {
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n != 1)
		fail_errno(EXIT_SETUP, "sending the pty to the caller");
}

/* A pty of the container's own devpts; the master goes to the caller, the
 * slave becomes the controlling terminal and stdio of a new session. */
static void setup_tty(const struct opts *o)
{
	struct winsize ws = {.ws_row = o->rows, .ws_col = o->cols};
	int unlock = 0, master, slave;

	master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0)
		fail_errno(EXIT_SETUP, "open /dev/ptmx in the container");
	if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
		fail_errno(EXIT_SETUP, "unlockpt");
#ifdef TIOCGPTPEER
	slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0)
#endif
	{
		char name[64];
		if (ptsname_r(master, name, sizeof(name)) != 0)
			fail_errno(EXIT_SETUP, "ptsname");
		slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (slave < 0)
			fail_errno(EXIT_SETUP, "open %s", name);
	}
	if (ioctl(master, TIOCSWINSZ, &ws) < 0)
		fail_errno(EXIT_SETUP, "setting the window size");
	send_fd(o->console_fd, master);
	close(master);
	close(o->console_fd);
	if (setsid() < 0)
		fail_errno(EXIT_SETUP, "setsid");
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		fail_errno(EXIT_SETUP, "making the pty the controlling terminal");
	for (int fd = 0; fd < 3; fd++)
		if (dup2(slave, fd) < 0)
			fail_errno(EXIT_SETUP, "dup2");
	close(slave);
}

static void close_other_fds(void)
{
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
#endif
	{
		struct rlimit rl;
		int max = 65536;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
		    rl.rlim_cur < (rlim_t)INT_MAX)
			max = (int)rl.rlim_cur;
		for (int fd = 3; fd < max; fd++)
			close(fd);
	}
}

/* As runc: the user may reopen its stdio (/dev/stdout, /proc/self/fd/N).
 * Only the owner changes; /dev/null is left alone. */
static void give_stdio(uid_t uid)
{
	struct stat null, st;
	if (stat("/dev/null", &null) < 0)
		memset(&null, 0, sizeof(null));
	for (int fd = 0; fd < 3; fd++) {
		if (fstat(fd, &st) < 0) {
			if (errno == EBADF)
				continue;
			fail_errno(EXIT_SETUP, "fstat(%d)", fd);
		}
		if (S_ISCHR(st.st_mode) && st.st_rdev == null.st_rdev)
			continue;
		if (st.st_uid == uid)
			continue;
		if (fchown(fd, uid, (gid_t)-1) < 0 && errno != EINVAL && errno != EPERM)
			fail_errno(EXIT_SETUP, "fchown(%d)", fd);
	}
}

static void set_caps(uint64_t effective)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	uint64_t permitted;

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data) < 0)
		fail_errno(EXIT_SETUP, "capget");
	permitted = ((uint64_t)data[1].permitted << 32) | data[0].permitted;
	effective &= permitted; /* never more than we hold */
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = (uint32_t)effective;
	data[1].effective = data[1].permitted = (uint32_t)(effective >> 32);
	/* inheritable stays empty: nothing is carried across exec but by root */
	if (syscall(SYS_capset, &hdr, data) < 0)
		fail_errno(EXIT_SETUP, "capset");
}

static int try_chdir(const char *cwd)
{
	if (chdir(cwd) == 0)
		return 0;
	if (errno == EACCES || errno == EPERM)
		return -1; /* root may not enter it: the user may (try again later) */
	fail_errno(EXIT_NOEXEC, "cd: %s", cwd);
}

static void become_user(const struct opts *o, const struct target *t)
{
	int need_chdir = 0;

	for (size_t i = 0; i < o->nrlimits; i++)
		if (setrlimit(o->rlimits[i].resource, &o->rlimits[i].limit) < 0)
			fail_errno(EXIT_SETUP, "setrlimit");
	if (o->keyring &&
	    syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, o->keyring, 0, 0, 0) < 0 &&
	    errno != ENOSYS)
		fail_errno(EXIT_SETUP, "joining the session keyring %s", o->keyring);
	for (int cap = 0; cap <= t->last_cap; cap++) {
		if (o->caps & (UINT64_C(1) << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
			fail_errno(EXIT_SETUP, "dropping capability %d from the bounding set", cap);
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		fail_errno(EXIT_SETUP, "clearing the ambient capabilities");
	give_stdio(o->uid);
	if (o->cwd)
		need_chdir = try_chdir(o->cwd) < 0;
	if (setgroups(o->ngroups, o->groups) < 0)
		fail_errno(EXIT_SETUP, "setgroups");
	if (setresgid(o->gid, o->gid, o->gid) < 0)
		fail_errno(EXIT_SETUP, "setresgid(%u)", (unsigned)o->gid);
	if (setresuid(o->uid, o->uid, o->uid) < 0)
		fail_errno(EXIT_SETUP, "setresuid(%u)", (unsigned)o->uid);
	/* Without PR_SET_KEEPCAPS, leaving uid 0 already emptied effective and
	 * permitted; capset empties inheritable for both. */
	set_caps(o->uid == 0 ? o->caps : 0);
	if (need_chdir && chdir(o->cwd) < 0)
		fail_errno(EXIT_NOEXEC, "cd: %s", o->cwd);
	if (o->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		fail_errno(EXIT_SETUP, "PR_SET_NO_NEW_PRIVS");
}

/* execvp without glibc's /bin/sh retry on ENOEXEC (runc does not do it
 * either), reporting as a shell: 127 not found, 126 found but not runnable. */
__attribute__((noreturn))
static void exec_command(char **argv)
{
	const char *cmd = argv[0], *path, *p;
	char buf[PATH_MAX];
	int seen_eacces = 0;

	if (strchr(cmd, '/')) {
		execv(cmd, argv);
		fail_errno(errno == ENOENT || errno == ENOTDIR ? EXIT_NOTFOUND : EXIT_NOEXEC,
			   "%s", cmd);
	}
	path = getenv("PATH");
	if (!path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (p = path;; p++) {
		const char *end = strchrnul(p, ':');
		size_t dlen = (size_t)(end - p);
		int n;
		if (dlen == 0)
			n = snprintf(buf, sizeof(buf), "%s", cmd); /* empty entry: cwd */
		else
			n = snprintf(buf, sizeof(buf), "%.*s/%s", (int)dlen, p, cmd);
		if (n > 0 && (size_t)n < sizeof(buf)) {
			execv(buf, argv);
			switch (errno) {
			case EACCES:
				seen_eacces = 1;
				/* fall through */
			case ENOENT:
			case ENOTDIR:
			case ELOOP:
			case ENAMETOOLONG:
			case ESTALE:
			case ENODEV:
			case ETIMEDOUT:
				break;
			default:
				fail_errno(EXIT_NOEXEC, "%s", cmd);
			}
		}
		if (*end == '\0')
			break;
		p = end;
	}
	if (seen_eacces) {
		errno = EACCES;
		fail_errno(EXIT_NOEXEC, "%s", cmd);
	}
	fail(EXIT_NOTFOUND, "%s: command not found", cmd);
}

__attribute__((noreturn))
static void child(const struct opts *o, const struct target *t)
{
	struct sigaction dfl;
	sigset_t none;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL); /* EINVAL for KILL, STOP, glibc's own: fine */
	join_cgroups(t);
	if (o->tty)
		setup_tty(o);
	else if (setsid() < 0)
		fail_errno(EXIT_SETUP, "setsid");
	close_other_fds();
	become_user(o, t);
	environ = o->env;
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
		fail_errno(EXIT_SETUP, "sigprocmask");
	exec_command(o->argv);
}

/* ---- the parent ------------------------------------------------------------- */

static volatile sig_atomic_t child_pid;

static void forward(int sig)
{
	int saved = errno;
	if (child_pid > 0)
		kill((pid_t)child_pid, sig);
	errno = saved;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct target t;
	struct sigaction sa;
	sigset_t all, old;
	int status, null;
	pid_t pid;

	/* Nothing in the container may open /proc/<us>/exe, fds or root. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail_errno(EXIT_SETUP, "PR_SET_DUMPABLE");
	parse_args(argc, argv, &o);
	memset(&t, 0, sizeof(t));
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		fail_errno(EXIT_SETUP, "open /dev/null");
	open_target(&o, &t);
	enter_parent_namespaces(&t);

	/* Signals that arrive before the child's pid is known wait, blocked. */
	sigfillset(&all);
	if (sigprocmask(SIG_BLOCK, &all, &old) < 0)
		fail_errno(EXIT_SETUP, "sigprocmask");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = forward;
	sa.sa_flags = SA_RESTART;
	sigfillset(&sa.sa_mask);
	for (int sig = 1; sig < NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCHLD)
			continue;
		sigaction(sig, &sa, NULL); /* EINVAL for glibc's reserved ones: fine */
	}
	pid = fork_into_cgroup(&t);
	if (pid < 0)
		fail_errno(EXIT_SETUP, "fork into the container");
	if (pid == 0)
		child(&o, &t);

	child_pid = pid;
	for (size_t i = 0; i < t.ncgroups; i++)
		close(t.cgroup_join[i]);
	if (t.cgroup2_dir >= 0)
		close(t.cgroup2_dir);
	if (t.cgroup2_procs >= 0)
		close(t.cgroup2_procs);
	close(t.cgroupns);
	if (o.console_fd >= 0)
		close(o.console_fd);
	/* The command owns its stdio: keep no copy, so that its closing them is
	 * seen at once by whoever reads the other end. */
	for (int fd = 0; fd < 3; fd++)
		if (dup2(null, fd) < 0)
			_exit(EXIT_SETUP);
	close_other_fds();
	if (sigprocmask(SIG_SETMASK, &old, NULL) < 0)
		_exit(EXIT_SETUP);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			_exit(EXIT_SETUP);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
