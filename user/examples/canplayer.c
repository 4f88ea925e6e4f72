/* canplayer (can-utils style): canplayer [-I FILE] [-t] [-v] [DST=SRC ...]
 * Replays a candump log ("(seconds.micros) can0 123#DEADBEEF" per line) from FILE (a file of
 * /boot; standard input without -I), keeping the logged gaps between frames unless -t.
 * DST=SRC sends the frames logged on interface SRC to interface DST (can-utils' assignment);
 * without assignments each frame goes to the interface it was logged on. -v prints each frame. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <can_text.h>

#define MAX_MAP 8

int main(int argc, char **argv)
{
    const char *in = NULL;
    int no_timing = 0, verbose = 0, nmap = 0;
    char dst[MAX_MAP][16], src[MAX_MAP][16];
    for (int i = 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!strcmp(argv[i], "-I") && i + 1 < argc) in = argv[++i];
        else if (!strcmp(argv[i], "-t")) no_timing = 1;
        else if (!strcmp(argv[i], "-v")) verbose = 1;
        else if (eq && nmap < MAX_MAP && eq - argv[i] < 16 && strlen(eq + 1) < 16) {
            snprintf(dst[nmap], 16, "%.*s", (int)(eq - argv[i]), argv[i]);
            snprintf(src[nmap], 16, "%s", eq + 1);
            nmap++;
        } else {
            fprintf(stderr, "usage: canplayer [-I FILE] [-t] [-v] [DST=SRC ...]\n");
            return 1;
        }
    }
    FILE *f = in ? fopen(in, "r") : stdin;
    if (!f) {
        fprintf(stderr, "canplayer: %s: %s\n", in, strerror(errno));
        return 1;
    }
    char line[256];
    double first_log = -1;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int fds[10];
    for (int i = 0; i < 10; i++) fds[i] = -1;
    long sent = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        double t;
        char ifn[16], frame[64];
        if (line[0] == '\n' || line[0] == '#') continue;
        if (sscanf(line, "(%lf) %15s %63s", &t, ifn, frame) != 3) {
            fprintf(stderr, "canplayer: line %ld: not a candump log line\n", lineno);
            return 1;
        }
        struct can_frame cf;
        if (can_parse_frame(frame, &cf) != 0) {
            fprintf(stderr, "canplayer: line %ld: bad CAN frame '%s'\n", lineno, frame);
            return 1;
        }
        const char *out = ifn;
        if (nmap) {
            out = NULL;
            for (int m = 0; m < nmap; m++)
                if (!strcmp(src[m], ifn)) out = dst[m];
            if (!out) continue; /* not assigned: skipped, as in can-utils */
        }
        if (strncmp(out, "can", 3) != 0 || out[3] < '0' || out[3] > '9' || out[4]) {
            fprintf(stderr, "canplayer: line %ld: interface '%s' is not can0..can9\n", lineno, out);
            return 1;
        }
        int n = out[3] - '0';
        if (fds[n] < 0) {
            char path[32];
            snprintf(path, sizeof path, "/dev/%s", out);
            fds[n] = open(path, O_RDWR);
            if (fds[n] < 0) {
                fprintf(stderr, "canplayer: %s: %s\n", path, strerror(errno));
                return 1;
            }
        }
        if (!no_timing) {
            if (first_log < 0) first_log = t;
            double due = t - first_log;
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            double el = (double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9;
            if (due > el) {
                double w = due - el;
                struct timespec d = {(time_t)w, (long)((w - (double)(time_t)w) * 1e9)};
                nanosleep(&d, NULL);
            }
        }
        if (write(fds[n], &cf, sizeof cf) != sizeof cf) {
            fprintf(stderr, "canplayer: line %ld: write to %s: %s\n", lineno, out, strerror(errno));
            return 1;
        }
        if (verbose) printf("%s %s\n", out, frame);
        sent++;
    }
    printf("canplayer: %ld frame(s) sent\n", sent);
    return 0;
}
