/* user_init: the first user program; the kernel starts it as /boot/user_init.
 *
 * 1. Reads /boot/init.conf, one program per line:
 *
 *        PROGRAM [ARGS...] [@C/T]
 *
 *    and starts each PROGRAM (/boot/PROGRAM) in the background. With `@C/T` the program
 *    gets its own Main VCPU with budget C and period T (microseconds, 0 < C <= T) on PCPU 0:
 *    user_init creates it with vcpu_create() and the child binds itself to it with
 *    vcpu_bind_task() before execve(). Blank lines and lines whose first non-blank
 *    character is '#' are ignored; a malformed line is reported as
 *    "user_init: init.conf line N: PROBLEM" and skipped. No init.conf: nothing is started.
 * 2. Runs /boot/shell in the foreground and waits for it; when it exits, prints
 *    "user_init: shell exited with status S; restarting" and starts it again (after a
 *    second if it lived less than a second, so a shell that cannot start does not spin).
 * 3. Meanwhile reaps every other child (the init.conf programs, and orphans if the kernel
 *    hands them over), reporting the init.conf ones: "user_init: task N (PROGRAM) has
 *    exited with status S", and destroys their VCPUs.
 *
 * For tests on the host Linux, the environment variable QUEST_BOOT replaces /boot. There the
 * VCPU calls fail with ENOSYS, so `@C/T` lines are reported and not started.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vcpu.h>

#define CONF_MAX (64 * 1024) /* most bytes of init.conf that are read */
#define LINE_MAX_LEN 1024    /* longest line, without the newline */
#define ARG_MAX_COUNT 32     /* most words on a line (program name included) */
#define SERVICES_MAX 64      /* most programs started from init.conf */
#define PATH_LEN 256         /* longest program path */
#define NAME_LEN 64          /* program name kept for messages */

extern char **environ;

static const char *boot_dir = "/boot";

/* A program started from init.conf. */
struct service {
    pid_t pid;
    int vcpu; /* its own VCPU, or -1 */
    char name[NAME_LEN];
};
static struct service services[SERVICES_MAX];
static int nservices;

/* The status as a number: the exit code, or 128 + the signal for a killed task. */
static int status_code(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return st;
}

/* Forks and executes boot_dir/argv[0]; the child first binds itself to vcpu if it is >= 0.
 * Returns the pid, or -1 (reported). */
static pid_t spawn(char *argv[], int vcpu)
{
    char path[PATH_LEN];
    int n = snprintf(path, sizeof path, "%s/%s", boot_dir, argv[0]);
    if (n < 0 || (size_t)n >= sizeof path) {
        fprintf(stderr, "user_init: %s: %s\n", argv[0], strerror(ENAMETOOLONG));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "user_init: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0); /* its own process group: a kill(0, ...) in it spares user_init */
        if (vcpu >= 0 && vcpu_bind_task(vcpu) < 0) {
            fprintf(stderr, "user_init: %s: cannot bind to VCPU %d: %s\n", argv[0], vcpu,
                    strerror(errno));
            _exit(127);
        }
        execve(path, argv, environ);
        fprintf(stderr, "user_init: %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Reads all of path (at most CONF_MAX bytes) into a NUL-terminated malloc'ed buffer, or
 * returns NULL (errno set). The file is closed before any program is started. */
static char *read_file(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    char *buf = malloc(CONF_MAX + 1);
    size_t len = 0;
    while (buf && len < CONF_MAX) {
        ssize_t r = read(fd, buf + len, CONF_MAX - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            buf = NULL;
            errno = e;
        }
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    if (buf && len == CONF_MAX) {
        char extra;
        if (read(fd, &extra, 1) == 1)
            fprintf(stderr, "user_init: %s: only the first %d bytes are used\n", path,
                    CONF_MAX);
    }
    close(fd);
    if (buf)
        buf[len] = '\0';
    return buf;
}

/* Reports a problem with line lineno of init.conf: "user_init: init.conf line N: ...". */
__attribute__((format(printf, 2, 3))) static void conf_error(int lineno, const char *fmt, ...)
{
    char msg[320];
    int n = snprintf(msg, sizeof msg - 1, "user_init: init.conf line %d: ", lineno);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - 1 - (size_t)n, fmt, ap);
    va_end(ap);
    strcat(msg, "\n");
    fputs(msg, stderr); /* one write: the line is not split by other tasks' output */
}

/* Parses a positive decimal number below 2^31; returns -1 if s is not one. */
static long parse_num(const char *s, const char *end)
{
    long v = 0;
    if (s == end)
        return -1;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > 0x7fffffffL)
            return -1;
    }
    return v;
}

/* Parses and starts one line of init.conf (NUL-terminated, modified in place). */
static void start_line(char *line, int lineno)
{
    char *argv[ARG_MAX_COUNT + 1];
    int argc = 0;
    char *p = line;
    while (*p && strchr(" \t\r\v\f", *p))
        p++;
    if (*p == '\0' || *p == '#')
        return;
    for (;;) {
        while (*p && strchr(" \t\r\v\f", *p))
            p++;
        if (!*p)
            break;
        if (argc == ARG_MAX_COUNT) {
            conf_error(lineno, "too many words (at most %d)", ARG_MAX_COUNT);
            return;
        }
        argv[argc++] = p;
        while (*p && !strchr(" \t\r\v\f", *p))
            p++;
        if (*p)
            *p++ = '\0';
    }
    argv[argc] = NULL;

    long c = -1, t = -1;
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] != '@')
            continue;
        char *slash = strchr(argv[i], '/');
        if (i != argc - 1) {
            conf_error(lineno, "'%s' must be the last word", argv[i]);
            return;
        }
        if (slash) {
            c = parse_num(argv[i] + 1, slash);
            t = parse_num(slash + 1, slash + strlen(slash));
        }
        if (c <= 0 || t <= 0 || c > t) {
            conf_error(lineno, "bad VCPU parameters '%s' (expected @C/T with 0 < C <= T)",
                       argv[i]);
            return;
        }
        argv[--argc] = NULL;
    }
    if (argc == 0) {
        conf_error(lineno, "no program");
        return;
    }
    if (strchr(argv[0], '/')) {
        conf_error(lineno, "'%s': not a program name in %s", argv[0], boot_dir);
        return;
    }
    if (nservices == SERVICES_MAX) {
        conf_error(lineno, "too many programs (at most %d)", SERVICES_MAX);
        return;
    }

    int vcpu = -1;
    if (c > 0) {
        struct sched_param param = {.type = MAIN_VCPU, .C = (int)c, .T = (int)t};
        vcpu = vcpu_create(&param);
        if (vcpu < 0) {
            conf_error(lineno, "cannot create VCPU %ld/%ld: %s; %s not started", c, t,
                       strerror(errno), argv[0]);
            return;
        }
    }
    pid_t pid = spawn(argv, vcpu);
    if (pid < 0) {
        if (vcpu >= 0)
            vcpu_destroy(vcpu, 1);
        return;
    }
    struct service *s = &services[nservices++];
    s->pid = pid;
    s->vcpu = vcpu;
    snprintf(s->name, sizeof s->name, "%s", argv[0]);
}

/* Starts the programs listed in boot_dir/init.conf. */
static void start_services(void)
{
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/init.conf", boot_dir);
    char *conf = read_file(path);
    if (!conf) {
        if (errno != ENOENT)
            fprintf(stderr, "user_init: %s: %s\n", path, strerror(errno));
        return;
    }
    int lineno = 0;
    for (char *line = conf; *line;) {
        char *nl = strchr(line, '\n');
        char *next = nl ? nl + 1 : line + strlen(line);
        if (nl)
            *nl = '\0';
        lineno++;
        if (strlen(line) > LINE_MAX_LEN)
            conf_error(lineno, "line too long (at most %d characters)", LINE_MAX_LEN);
        else
            start_line(line, lineno);
        line = next;
    }
    free(conf);
    fflush(stdout);
}

/* A child other than the shell has ended: report it if it is an init.conf program. */
static void reaped(pid_t pid, int st)
{
    for (int i = 0; i < nservices; i++) {
        if (services[i].pid != pid)
            continue;
        printf("user_init: task %d (%s) has exited with status %d\n", (int)pid,
               services[i].name, status_code(st));
        fflush(stdout);
        if (services[i].vcpu >= 0)
            vcpu_destroy(services[i].vcpu, 0); /* EBUSY if its own children still use it */
        services[i] = services[--nservices];
        return;
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(void)
{
    const char *boot = getenv("QUEST_BOOT");
    if (boot && *boot)
        boot_dir = boot;
    setvbuf(stdout, NULL, _IOLBF, 0);

    start_services();

    char shell_name[] = "shell";
    char *shell_argv[] = {shell_name, NULL};
    for (;;) {
        double started = now();
        pid_t shell = spawn(shell_argv, -1);
        int st = 0;
        bool ended = false;
        while (shell > 0 && !ended) {
            pid_t pid = waitpid(-1, &st, 0);
            if (pid == shell)
                ended = true;
            else if (pid > 0)
                reaped(pid, st);
            else if (errno != EINTR) { /* ECHILD: cannot happen while the shell lives */
                fprintf(stderr, "user_init: waitpid: %s\n", strerror(errno));
                break;
            }
        }
        if (ended)
            printf("user_init: shell exited with status %d; restarting\n", status_code(st));
        fflush(stdout);
        if (now() - started < 1.0)
            sleep(1);
    }
}
