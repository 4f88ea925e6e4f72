/* shell: the Quest shell (the tutorial's "User Interaction: shell" slides).
 *
 * Reads one command per line from stdin (the console) after the prompt ">" and
 *
 *   NAME [ARGS...]          runs /boot/NAME in the foreground (fork + execve + waitpid)
 *   nowait NAME [ARGS...]   runs /boot/NAME in the background; it becomes the latest task
 *   wait                    waits for the latest background task
 *   ps -t [ID]              lists the tasks (or task ID):  PS_TASKS
 *   ps -v [ID]              lists the VCPUs (or VCPU ID):  PS_VCPUS
 *   kill -t ID              marks task ID for termination: TASK_KILL
 *   kill -c                 marks the latest task the shell started for termination
 *   help                    lists the built-ins
 *
 * Before each prompt (and after each foreground command) finished background tasks are
 * reaped and reported as "shell: task N has exited". EOF on stdin ends the shell (status 0).
 * There is no `exit`: the shell is the console. The exact output formats are in
 * docs/shell.md.
 *
 * For tests on the host Linux, the environment variable QUEST_BOOT replaces the program
 * directory /boot. On Linux the Quest calls fail with ENOSYS: `ps` then says so, and `kill`
 * falls back to kill(2) with SIGKILL.
 */
#define _GNU_SOURCE /* strnlen, kill */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <quest.h>

#define LINE_MAX_LEN 16384 /* longest command line, without the newline */
#define ARG_MAX_COUNT 1024 /* most words on a command line (all commands of a pipeline) */
#define PIPE_MAX 16        /* most commands in one pipeline */
#define BG_MAX 64         /* background tasks remembered for `wait` / `kill -c` */
#define PATH_LEN 256      /* longest program path */
#define CTRL_C 0x03

extern char **environ;

/* The program directory: $QUEST_BOOT (host tests only) or /boot. */
static const char *boot_dir = "/boot";

/* Live background tasks in creation order; the last one is "the latest task". */
static pid_t bg_tasks[BG_MAX];
static int bg_count;

/* ------------------------------------------------------------------------------------------
 * Input
 * ---------------------------------------------------------------------------------------- */

enum {
    LINE_EOF = -1,      /* end of input (or a read error, already reported) */
    LINE_TOO_LONG = -2, /* the line was longer than LINE_MAX_LEN and was discarded */
    LINE_CTRL_C = -3,   /* a ctrl-c byte cancelled the line */
};

/* Bytes read from fd 0 but not consumed yet. On Quest one read() returns at most one line; a
 * pipe (host tests) may deliver several lines at once. */
static char in_buf[LINE_MAX_LEN];
static size_t in_pos, in_len;

/* The next input byte, or -1 at EOF or on a read error. */
static int next_byte(void)
{
    while (in_pos == in_len) {
        ssize_t n = read(0, in_buf, sizeof in_buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fprintf(stderr, "shell: read: %s\n", strerror(errno));
        if (n <= 0)
            return -1;
        in_pos = 0;
        in_len = (size_t)n;
    }
    return (unsigned char)in_buf[in_pos++];
}

/* Reads one line into line[0..LINE_MAX_LEN] (NUL-terminated, without the newline) and
 * returns its length, or LINE_EOF, LINE_TOO_LONG or LINE_CTRL_C. A final line without a
 * newline is returned as a line; NUL bytes become spaces. On ctrl-c, *newline_follows tells
 * whether a newline came with it (then the console has already moved to a new line). */
static int read_line(char line[LINE_MAX_LEN + 1], bool *newline_follows)
{
    size_t n = 0;
    bool too_long = false;
    for (;;) {
        int c = next_byte();
        if (c < 0) {
            if (n == 0 && !too_long)
                return LINE_EOF;
            break; /* the last line had no newline */
        }
        if (c == '\n')
            break;
        if (c == CTRL_C) {
            *newline_follows = in_pos < in_len && in_buf[in_pos] == '\n';
            if (*newline_follows)
                in_pos++;
            return LINE_CTRL_C;
        }
        if (n == LINE_MAX_LEN) {
            too_long = true; /* keep reading up to the newline, dropping the bytes */
            continue;
        }
        line[n++] = c == '\0' ? ' ' : (char)c;
    }
    line[n] = '\0';
    return too_long ? LINE_TOO_LONG : (int)n;
}

/* ------------------------------------------------------------------------------------------
 * Words: quoting, $VAR and $?, redirections and pipes
 * ---------------------------------------------------------------------------------------- */

/* The status of the last foreground command ($?): its exit code, or 128 + the signal. */
static int last_status;

/* One command of a pipeline: its words and redirections. */
struct command {
    char **argv; /* argc words and a NULL */
    int argc;
    const char *in;  /* < FILE, or NULL */
    const char *out; /* > FILE or >> FILE, or NULL */
    bool append;
};

/* A parsed line: up to PIPE_MAX commands joined by |. Words point into `store`. */
struct pipeline {
    struct command cmd[PIPE_MAX];
    int n;
    char *words[ARG_MAX_COUNT + PIPE_MAX];
    int nwords;
    char *store; /* all the words, NUL-separated (malloc'ed) */
};

/* Appends the value of variable name[0..len) ($? or an environment variable) to *out. */
static void expand_var(const char *name, size_t len, char **out)
{
    char num[16];
    const char *v = NULL;
    if (len == 1 && name[0] == '?') {
        snprintf(num, sizeof num, "%d", last_status);
        v = num;
    } else {
        char key[256];
        if (len < sizeof key) {
            memcpy(key, name, len);
            key[len] = '\0';
            v = getenv(key);
        }
    }
    if (v) {
        size_t n = strlen(v);
        memcpy(*out, v, n);
        *out += n;
    }
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Splits `line` into words and the operators | < > >>, with quoting ('...' literal, "..."
 * with $ expansion and \" \\ \$ escapes, \ outside quotes) and $NAME, ${NAME}, $? expanded.
 * An unquoted word that expands to nothing is dropped. Returns 0, or -1 after printing the
 * error. The caller frees p->store. */
static int parse_line(const char *line, struct pipeline *p)
{
    memset(p, 0, sizeof *p);
    /* Expansion can grow a word: room for the line plus every variable's value. */
    size_t room = strlen(line) * 2 + 1;
    for (char **e = environ; e && *e; e++)
        room += strlen(*e);
    room += 64 * (strlen(line) + 1); /* $? */
    p->store = malloc(room);
    if (!p->store) {
        fprintf(stderr, "shell: %s\n", strerror(ENOMEM));
        return -1;
    }
    char *out = p->store;
    struct command *c = &p->cmd[0];
    p->n = 1;
    c->argv = &p->words[0];
    int redirect = 0; /* '<', '>' or 'a' (>>) waiting for its file name */
    const char *s = line;
    for (;;) {
        while (*s && strchr(" \t\r\v\f", *s))
            s++;
        if (!*s)
            break;
        if (*s == '|' || *s == '<' || *s == '>') {
            if (redirect) {
                fprintf(stderr, "shell: syntax error near '%c'\n", *s);
                return -1;
            }
            if (*s == '|') {
                if (c->argc == 0 || p->n == PIPE_MAX) {
                    fprintf(stderr, c->argc == 0 ? "shell: syntax error near '|'\n" : "shell: too many commands in a pipeline (at most %d)\n", PIPE_MAX);
                    return -1;
                }
                c->argv[c->argc] = NULL;
                p->words[p->nwords++] = NULL;
                c = &p->cmd[p->n++];
                c->argv = &p->words[p->nwords];
                s++;
            } else if (*s == '>' && s[1] == '>') {
                redirect = 'a';
                s += 2;
            } else {
                redirect = *s++;
            }
            continue;
        }
        /* A word. */
        char *word = out;
        bool quoted = false, expanded = false;
        while (*s && !strchr(" \t\r\v\f|<>", *s)) {
            if (*s == '\'') {
                quoted = true;
                const char *end = strchr(s + 1, '\'');
                if (!end) {
                    fprintf(stderr, "shell: syntax error: unterminated quote\n");
                    return -1;
                }
                memcpy(out, s + 1, (size_t)(end - s - 1));
                out += end - s - 1;
                s = end + 1;
            } else if (*s == '"') {
                quoted = true;
                s++;
                while (*s && *s != '"') {
                    if (*s == '\\' && (s[1] == '"' || s[1] == '\\' || s[1] == '$')) {
                        *out++ = s[1];
                        s += 2;
                    } else if (*s == '$' && (s[1] == '?' || is_name_char(s[1]) || s[1] == '{')) {
                        goto dollar;
                    } else {
                        *out++ = *s++;
                    }
                    continue;
                dollar:
                    if (s[1] == '{') {
                        const char *end = strchr(s + 2, '}');
                        if (!end) {
                            fprintf(stderr, "shell: syntax error: unterminated ${\n");
                            return -1;
                        }
                        expand_var(s + 2, (size_t)(end - s - 2), &out);
                        s = end + 1;
                    } else if (s[1] == '?') {
                        expand_var("?", 1, &out);
                        s += 2;
                    } else {
                        size_t n = 1;
                        while (is_name_char(s[n]))
                            n++;
                        expand_var(s + 1, n - 1, &out);
                        s += n;
                    }
                }
                if (*s != '"') {
                    fprintf(stderr, "shell: syntax error: unterminated quote\n");
                    return -1;
                }
                s++;
            } else if (*s == '\\') {
                quoted = true;
                if (s[1]) {
                    *out++ = s[1];
                    s += 2;
                } else {
                    s++;
                }
            } else if (*s == '$' && s[1] == '{') {
                const char *end = strchr(s + 2, '}');
                if (!end) {
                    fprintf(stderr, "shell: syntax error: unterminated ${\n");
                    return -1;
                }
                expand_var(s + 2, (size_t)(end - s - 2), &out);
                expanded = true;
                s = end + 1;
            } else if (*s == '$' && s[1] == '?') {
                expand_var("?", 1, &out);
                expanded = true;
                s += 2;
            } else if (*s == '$' && is_name_char(s[1])) {
                size_t n = 1;
                while (is_name_char(s[n]))
                    n++;
                expand_var(s + 1, n - 1, &out);
                expanded = true;
                s += n;
            } else {
                *out++ = *s++;
            }
        }
        *out++ = '\0';
        if (!quoted && expanded && word[0] == '\0')
            continue; /* an unquoted expansion to nothing is no word */
        if (redirect) {
            if (redirect == '<')
                c->in = word;
            else {
                c->out = word;
                c->append = redirect == 'a';
            }
            redirect = 0;
            continue;
        }
        if (p->nwords >= ARG_MAX_COUNT) {
            fprintf(stderr, "shell: too many arguments (at most %d words)\n", ARG_MAX_COUNT);
            return -1;
        }
        c->argv[c->argc++] = word;
        p->nwords++;
    }
    if (redirect) {
        fprintf(stderr, "shell: syntax error: a redirection without a file name\n");
        return -1;
    }
    if (c->argc == 0 && (p->n > 1 || c->in || c->out)) {
        fprintf(stderr, "shell: syntax error: a command is missing\n");
        return -1;
    }
    c->argv[c->argc] = NULL;
    p->words[p->nwords++] = NULL;
    return 0;
}

/* Parses a task or VCPU id: decimal digits only, at most INT32_MAX. Returns -1 if invalid. */
static long parse_id(const char *s)
{
    long v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > INT32_MAX)
            return -1;
    }
    return v;
}

/* ------------------------------------------------------------------------------------------
 * Tasks the shell started
 * ---------------------------------------------------------------------------------------- */

static void bg_add(pid_t pid)
{
    if (bg_count == BG_MAX) { /* forget the oldest: it is still reaped and reported */
        memmove(bg_tasks, bg_tasks + 1, (BG_MAX - 1) * sizeof bg_tasks[0]);
        bg_count--;
    }
    bg_tasks[bg_count++] = pid;
}

static void bg_remove(pid_t pid)
{
    for (int i = 0; i < bg_count; i++) {
        if (bg_tasks[i] == pid) {
            memmove(bg_tasks + i, bg_tasks + i + 1,
                    (size_t)(bg_count - i - 1) * sizeof bg_tasks[0]);
            bg_count--;
            return;
        }
    }
}

/* The latest task the shell started that is still alive, or 0. (A foreground task has always
 * ended by the time the shell reads a command again.) */
static pid_t latest_task(void)
{
    return bg_count ? bg_tasks[bg_count - 1] : 0;
}

static void report_exit(pid_t pid)
{
    bg_remove(pid);
    printf("shell: task %d has exited\n", (int)pid);
}

/* Reaps every background task that has ended, without blocking. */
static void reap_background(void)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0) /* 0: children left, none ended; -1 ECHILD: no children */
            return;
        report_exit(pid);
    }
}

/* Waits (blocking) for task pid; returns false if it is not our child. Its status ($?)
 * goes to *code: the exit code, or 128 + the signal that ended it. */
static bool wait_status(pid_t pid, int *code)
{
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, 0);
        if (r == pid) {
            *code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 0;
            return true;
        }
        if (r < 0 && errno != EINTR)
            return false;
    }
}

static bool wait_task(pid_t pid)
{
    int code;
    return wait_status(pid, &code);
}

struct builtin;
static const struct builtin *find_builtin(const char *name);
static void builtin_run(const struct builtin *b, int argc, char *argv[]);

/* Starts command c (boot_dir/NAME, or the path as given if it has a '/'), its stdin from
 * in_fd and its stdout to out_fd when they are >= 0, then its own redirections; close_fd is
 * closed in the child (the other end of its pipe). A built-in in a pipeline runs in the
 * child. Returns its pid or -1 (reported). In the child an execve failure prints
 * "shell: NAME: <error>" and exits with 127. */
static pid_t spawn_cmd(struct command *c, int in_fd, int out_fd, int close_fd, pid_t pgid)
{
    char path[PATH_LEN];
    char **argv = c->argv;
    int n = strchr(argv[0], '/') ? snprintf(path, sizeof path, "%s", argv[0])
                                 : snprintf(path, sizeof path, "%s/%s", boot_dir, argv[0]);
    if (n < 0 || (size_t)n >= sizeof path) {
        fprintf(stderr, "shell: %s: %s\n", argv[0], strerror(ENAMETOOLONG));
        return -1;
    }
    fflush(NULL); /* nothing buffered may be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "shell: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        setpgid(0, pgid); /* one process group per command line (0: a new one, led by the first) */
        if (close_fd >= 0)
            close(close_fd);
        if (in_fd >= 0) {
            dup2(in_fd, 0);
            close(in_fd);
        }
        if (out_fd >= 0) {
            dup2(out_fd, 1);
            close(out_fd);
        }
        if (c->in) {
            int fd = open(c->in, O_RDONLY);
            if (fd < 0) {
                fprintf(stderr, "shell: %s: %s\n", c->in, strerror(errno));
                _exit(1);
            }
            dup2(fd, 0);
            close(fd);
        }
        if (c->out) {
            int fd = open(c->out, O_WRONLY | O_CREAT | (c->append ? O_APPEND : O_TRUNC), 0666);
            if (fd < 0) {
                fprintf(stderr, "shell: %s: %s\n", c->out, strerror(errno));
                _exit(1);
            }
            dup2(fd, 1);
            close(fd);
        }
        const struct builtin *b = find_builtin(argv[0]);
        if (b) {
            builtin_run(b, c->argc, argv);
            fflush(NULL);
            _exit(0);
        }
        execve(path, argv, environ);
        fprintf(stderr, "shell: %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pgid ? pgid : pid); /* also here: whichever runs first */
    return pid;
}

/* Starts argv as a command without redirections. */
static pid_t spawn(char *argv[])
{
    struct command c = {.argv = argv};
    while (argv[c.argc])
        c.argc++;
    return spawn_cmd(&c, -1, -1, -1, 0);
}

/* ------------------------------------------------------------------------------------------
 * ps
 * ---------------------------------------------------------------------------------------- */

static const char *state_name(uint32_t status)
{
    switch (status & QUEST_TASK_STATE_MASK) {
    case QUEST_TASK_RUNNING: return "running";
    case QUEST_TASK_READY: return "ready";
    case QUEST_TASK_SLEEPING: return "sleeping";
    case QUEST_TASK_WAITING: return "waiting";
    case QUEST_TASK_ZOMBIE: return "zombie";
    default: return "unknown";
    }
}

/* Fetches all records with fetch(buf, max) (PS_TASKS or PS_VCPUS): asks for the count, then
 * for the records, and retries if tasks appeared in between. Returns a malloc'ed array and
 * its length in *count, or NULL with errno set. */
static void *ps_fetch(int (*fetch)(void *, int), size_t size, int *count)
{
    int total = fetch(NULL, 0);
    for (int attempt = 0; total >= 0 && attempt < 8; attempt++) {
        int max = total + 8;
        void *buf = calloc((size_t)max, size);
        if (!buf)
            return NULL;
        total = fetch(buf, max);
        if (total >= 0 && total <= max) {
            *count = total;
            return buf;
        }
        free(buf);
    }
    if (total >= 0)
        errno = EAGAIN;
    return NULL;
}

static int fetch_tasks(void *buf, int max) { return ps_tasks(buf, max); }
static int fetch_vcpus(void *buf, int max) { return ps_vcpus(buf, max); }

static void ps_error(void)
{
    if (errno == ENOSYS)
        fprintf(stderr, "ps: not supported on this kernel (%s)\n", strerror(errno));
    else
        fprintf(stderr, "ps: %s\n", strerror(errno));
}

/* `ps -t [ID]`: "N tasks", a header and one row per task (or only task ID). */
static void ps_t(long only)
{
    int n;
    struct task_info *t = ps_fetch(fetch_tasks, sizeof *t, &n);
    if (!t) {
        ps_error();
        return;
    }
    int shown = 0;
    for (int i = 0; i < n; i++)
        shown += only < 0 || t[i].id == (uint32_t)only;
    if (only >= 0 && shown == 0) {
        fprintf(stderr, "ps: no such task %ld\n", only);
        free(t);
        return;
    }
    printf("\n%d tasks\n", shown);
    printf("%4s %13s %6s %4s %4s %11s %6s\n", "ID", "Name", "Parent", "VCPU", "PCPU", "Status",
           "Thread");
    for (int i = 0; i < n; i++) {
        if (only >= 0 && t[i].id != (uint32_t)only)
            continue;
        char status[32];
        snprintf(status, sizeof status, "%s%s", state_name(t[i].status),
                 (t[i].status & QUEST_TASK_TERMINAL) ? "/terminal" : "");
        /* The "Parent" column is the process (thread group); "Thread" is the thread count for
         * a main task and the thread index for the others, as in the seed. */
        printf("%4u %13.*s %6u %4u %4u %11s %6u\n", t[i].id,
               (int)strnlen(t[i].name, sizeof t[i].name), t[i].name, t[i].process, t[i].vcpu,
               t[i].pcpu, status, t[i].thread ? t[i].thread : t[i].nthreads);
    }
    free(t);
}

/* `ps -v [ID]`: "N VCPUs", a header and one row per VCPU (or only VCPU ID). */
static void ps_v(long only)
{
    int n;
    struct vcpu_info *v = ps_fetch(fetch_vcpus, sizeof *v, &n);
    if (!v) {
        ps_error();
        return;
    }
    int shown = 0;
    for (int i = 0; i < n; i++)
        shown += only < 0 || v[i].id == (uint32_t)only;
    if (only >= 0 && shown == 0) {
        fprintf(stderr, "ps: no such VCPU %ld\n", only);
        free(v);
        return;
    }
    printf("\n%d VCPUs\n", shown);
    printf("VCPU PCPU Type      C      T  num_tasks\n"); /* the seed's header, verbatim */
    for (int i = 0; i < n; i++) {
        if (only >= 0 && v[i].id != (uint32_t)only)
            continue;
        const char *type = v[i].type == 0 ? "main" : v[i].type == 1 ? "io" : "?";
        printf("%3u %4u %-4s %9u %7u %6u\n", v[i].id, v[i].pcpu, type, v[i].C, v[i].T,
               v[i].num_tasks);
    }
    free(v);
}

static void builtin_ps(int argc, char *argv[])
{
    long id = -1;
    if (argc < 2 || argc > 3 || (strcmp(argv[1], "-t") && strcmp(argv[1], "-v")) ||
        (argc == 3 && (id = parse_id(argv[2])) < 0)) {
        fprintf(stderr, "usage: ps -t [TASK_ID] | ps -v [VCPU_ID]\n");
        return;
    }
    if (argv[1][1] == 't')
        ps_t(id);
    else
        ps_v(id);
}

/* ------------------------------------------------------------------------------------------
 * kill, nowait, wait, help
 * ---------------------------------------------------------------------------------------- */

/* Marks a task for termination (TASK_KILL). On a kernel without the Quest calls (Linux),
 * sends SIGKILL instead. Returns 0 or -1 with errno. */
static int kill_task(pid_t task)
{
    if (task_kill((int)task) == 0)
        return 0;
    if (errno != ENOSYS)
        return -1;
    if (task <= 0) { /* kill(0) or kill(-1) would hit more than one task */
        errno = ESRCH;
        return -1;
    }
    return kill(task, SIGKILL);
}

static void builtin_kill(int argc, char *argv[])
{
    if (argc == 2 && !strcmp(argv[1], "-c")) {
        pid_t task = latest_task();
        if (!task) {
            fprintf(stderr, "kill: no task to kill\n");
        } else if (kill_task(task) == 0) {
            printf("kill: task %d marked for termination\n", (int)task);
        } else {
            fprintf(stderr, "kill: task %d: %s\n", (int)task, strerror(errno));
        }
        return;
    }
    long id;
    if (argc != 3 || strcmp(argv[1], "-t") || (id = parse_id(argv[2])) < 0) {
        fprintf(stderr, "usage: kill -t TASK_ID | kill -c\n");
        return;
    }
    if (kill_task((pid_t)id) == 0)
        return;
    if (errno == ESRCH)
        fprintf(stderr, "kill: no such task %ld\n", id);
    else
        fprintf(stderr, "kill: task %ld: %s\n", id, strerror(errno));
}

static void builtin_nowait(int argc, char *argv[])
{
    if (argc < 2) {
        fprintf(stderr, "usage: nowait PROGRAM [ARGS...]\n");
        return;
    }
    pid_t pid = spawn(argv + 1);
    if (pid > 0)
        bg_add(pid);
}

static void builtin_wait(int argc, char *argv[])
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: wait\n");
        return;
    }
    pid_t task = latest_task();
    if (!task) {
        fprintf(stderr, "wait: no background task\n");
        return;
    }
    if (wait_task(task))
        report_exit(task);
    else /* not our child any more: forget it */
        bg_remove(task);
}

static void builtin_help(int argc, char *argv[])
{
    (void)argc;
    (void)argv;
    printf("Quest shell built-ins:\n"
           "  ps -t [TASK_ID]        list the tasks (or one task)\n"
           "  ps -v [VCPU_ID]        list the VCPUs (or one VCPU)\n"
           "  kill -t TASK_ID        mark a task for termination\n"
           "  kill -c                mark the latest task started by the shell for termination\n"
           "  nowait PROGRAM [ARGS]  run %s/PROGRAM in the background\n"
           "  wait                   wait for the latest background task\n"
           "  cd [DIRECTORY]         change the working directory\n"
           "  help                   this list\n"
           "Any other PROGRAM [ARGS] runs %s/PROGRAM in the foreground; quoting ('...', \"...\", \\),\n"
           "$NAME and $?, redirections (< > >>), pipes (|) and lists (; && ||) work as in sh.\n",
           boot_dir, boot_dir);
}

static void builtin_cd(int argc, char *argv[])
{
    const char *dir = argc > 1 ? argv[1] : "/";
    if (argc > 2) {
        fprintf(stderr, "usage: cd [DIRECTORY]\n");
        return;
    }
    if (chdir(dir) < 0)
        fprintf(stderr, "cd: %s: %s\n", dir, strerror(errno));
}

static const struct builtin {
    const char *name;
    void (*run)(int argc, char *argv[]);
} builtins[] = {
    {"ps", builtin_ps},     {"kill", builtin_kill}, {"nowait", builtin_nowait},
    {"wait", builtin_wait}, {"help", builtin_help}, {"cd", builtin_cd},
};

static const struct builtin *find_builtin(const char *name)
{
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (!strcmp(name, builtins[i].name))
            return &builtins[i];
    return NULL;
}

static void builtin_run(const struct builtin *b, int argc, char *argv[])
{
    b->run(argc, argv);
}

/* Runs one command line: a pipeline of commands with redirections. */
static void run_line(char *line)
{
    static struct pipeline pl;
    if (parse_line(line, &pl) < 0) {
        free(pl.store);
        last_status = 2;
        return;
    }
    struct command *c = &pl.cmd[0];
    if (c->argc == 0) {
        free(pl.store);
        return;
    }
    const struct builtin *b = find_builtin(c->argv[0]);
    if (pl.n == 1 && b && !c->in && !c->out) {
        builtin_run(b, c->argc, c->argv);
        free(pl.store);
        return;
    }
    pid_t pids[PIPE_MAX];
    int started = 0, prev = -1;
    for (int i = 0; i < pl.n; i++) {
        int pfd[2] = {-1, -1};
        if (i < pl.n - 1 && pipe(pfd) < 0) {
            fprintf(stderr, "shell: pipe: %s\n", strerror(errno));
            break;
        }
        pid_t pid = spawn_cmd(&pl.cmd[i], prev, pfd[1], pfd[0], started ? pids[0] : 0);
        if (prev >= 0)
            close(prev);
        if (pfd[1] >= 0)
            close(pfd[1]);
        prev = pfd[0];
        if (pid < 0)
            break;
        pids[started++] = pid;
    }
    if (prev >= 0)
        close(prev);
    /* The last command is the foreground one (ctrl-c ends it); then the others. */
    last_status = started == pl.n ? 0 : 1;
    for (int i = started - 1; i >= 0; i--) {
        int code;
        if (wait_status(pids[i], &code) && i == pl.n - 1)
            last_status = code;
    }
    free(pl.store);
}

/* Runs a command list: pipelines separated by `;` (run in turn), `&&` (the next only if the
 * previous succeeded, $? == 0) and `||` (only if it failed). Separators inside quotes or after
 * a backslash are text. */
static void run_list(char *line)
{
    char *start = line, *p = line;
    char quote = 0;
    int skip = 0; /* 1: skip the next pipeline (an && after a failure, an || after a success) */
    for (;; p++) {
        char c = *p;
        if (quote) {
            if (c == '\\' && quote == '"' && p[1])
                p++;
            else if (c == quote)
                quote = 0;
            if (c)
                continue;
        }
        if (c == '\\' && p[1]) {
            p++;
            continue;
        }
        if (c == '\'' || c == '"') {
            quote = c;
            continue;
        }
        int sep = c == '\0' || c == ';' ? 1 : (c == '&' && p[1] == '&') || (c == '|' && p[1] == '|') ? 2 : 0;
        if (!sep)
            continue;
        *p = '\0';
        if (!skip)
            run_line(start);
        if (c == '\0')
            return;
        skip = (c == '&' && last_status != 0) || (c == '|' && last_status == 0) ? 1 : 0;
        if (sep == 2)
            p++;
        start = p + 1;
    }
}

int main(void)
{
    const char *boot = getenv("QUEST_BOOT");
    if (boot && *boot)
        boot_dir = boot;
    /* Line-buffered stdout whatever the console answers to TIOCGWINSZ; the prompt is
     * flushed by hand. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    static char line[LINE_MAX_LEN + 1];
    for (;;) {
        reap_background();
        fputs(">", stdout);
        fflush(stdout);
        bool newline_follows = false;
        int n = read_line(line, &newline_follows);
        if (n == LINE_EOF) {
            fputs("\n", stdout); /* end the prompt's line */
            break;
        }
        if (n == LINE_CTRL_C) {
            if (!newline_follows)
                fputs("\n", stdout);
            continue;
        }
        if (n == LINE_TOO_LONG) {
            fprintf(stderr, "shell: line too long (at most %d characters)\n", LINE_MAX_LEN);
            continue;
        }
        run_list(line);
        fflush(stdout);
    }
    fflush(stdout);
    return 0;
}
