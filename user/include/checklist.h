/* checklist.h: the reporting of the check programs that run on Quest and on Linux alike
 * (evtest, memtest, proctest, sigtest): one line per check, "PROG: NAME ok" or
 * "PROG: NAME FAILED: why", counted in `checks` and `failed` for the program's summary line.
 * Define CHECK_PROGRAM (the prefix) before including it. */
#ifndef QUEST_CHECKLIST_H
#define QUEST_CHECKLIST_H

#include <stdarg.h>
#include <stdio.h>

#ifndef CHECK_PROGRAM
#error "define CHECK_PROGRAM before including <checklist.h>"
#endif

static int checks, failed;

static void check(const char *name, int ok, const char *fmt, ...) __attribute__((format(printf, 3, 4), unused));
static void check(const char *name, int ok, const char *fmt, ...)
{
    checks++;
    if (ok) {
        printf(CHECK_PROGRAM ": %s ok\n", name);
    } else {
        failed++;
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        printf(CHECK_PROGRAM ": %s FAILED: %s\n", name, buf);
    }
    fflush(stdout);
}

#endif /* QUEST_CHECKLIST_H */
