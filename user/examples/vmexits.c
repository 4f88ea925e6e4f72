/* vmexits [MS]: the Quest-V monitor's VM-exit counters per CPU, read with the questv_exits
 * call (the monitor's exit-statistics hypercall). Without MS: counts since each sandbox was
 * launched. With MS: the exits during MS milliseconds (the shell idle meanwhile); the second
 * reading's own hypercall is included and said so. Each line ends, where there were exits,
 * with the monitor's mean handling time per exit by reason ("| monitor ns/exit: msr 812"),
 * from the exit to the next VMRUN. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <quest.h>

#define MAXCPU 64

static const char *reason[QUESTV_EXIT_REASONS] = {
    "cpuid", "io", "msr", "hypercall", "npf", "shutdown", "init", "other",
};

struct snapshot {
    struct questv_exits_header h;
    struct questv_cpu_exits cpu[MAXCPU];
};

static int take(struct snapshot *s)
{
    if (questv_exits(s, sizeof *s) < 0) {
        printf("vmexits: %s\n", errno == ENODEV ? "not running under the Quest-V monitor" : strerror(errno));
        return -1;
    }
    if (s->h.reasons != QUESTV_EXIT_REASONS || s->h.cpus > MAXCPU) {
        printf("vmexits: unexpected record layout (%u reasons, %u CPUs)\n", s->h.reasons, s->h.cpus);
        return -1;
    }
    return 0;
}

static void line(const struct questv_cpu_exits *c, const uint64_t *n, const uint64_t *ns)
{
    uint64_t total = 0;
    for (int r = 0; r < QUESTV_EXIT_REASONS; r++)
        total += n[r];
    printf("vmexits: cpu %u sandbox ", c->cpu);
    if (c->sandbox == 0xffffffffu)
        printf("-");
    else
        printf("%u", c->sandbox);
    printf(" total %llu", (unsigned long long)total);
    for (int r = 0; r < QUESTV_EXIT_REASONS; r++)
        printf(" %s %llu", reason[r], (unsigned long long)n[r]);
    if (total > 0) {
        printf(" | monitor ns/exit:");
        for (int r = 0; r < QUESTV_EXIT_REASONS; r++)
            if (n[r] > 0)
                printf(" %s %llu", reason[r], (unsigned long long)(ns[r] / n[r]));
    }
    printf("\n");
}

int main(int argc, char *argv[])
{
    static struct snapshot a, b;
    long ms = argc > 1 ? atol(argv[1]) : 0;
    if (argc > 1 && ms <= 0) {
        printf("usage: vmexits [MS]\n");
        return 2;
    }
    if (take(&a) < 0)
        return 1;
    if (ms == 0) {
        for (uint32_t i = 0; i < a.h.cpus; i++)
            line(&a.cpu[i], a.cpu[i].counts, a.cpu[i].monitor_ns);
        return 0;
    }
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &t, &t) == EINTR)
        ;
    if (take(&b) < 0)
        return 1;
    printf("vmexits: exits during %ld ms (including this program's second reading, one hypercall)\n", ms);
    for (uint32_t i = 0; i < b.h.cpus && i < a.h.cpus; i++) {
        uint64_t d[QUESTV_EXIT_REASONS], dns[QUESTV_EXIT_REASONS];
        for (int r = 0; r < QUESTV_EXIT_REASONS; r++) {
            d[r] = b.cpu[i].counts[r] - a.cpu[i].counts[r];
            dns[r] = b.cpu[i].monitor_ns[r] - a.cpu[i].monitor_ns[r];
        }
        line(&b.cpu[i], d, dns);
    }
    return 0;
}
