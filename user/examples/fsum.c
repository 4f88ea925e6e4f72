/* fsum PATH...: for each file, its size and FNV-1a 64-bit checksum of its bytes read with
 * read(2) in 4000-byte pieces ("SIZE HASH PATH"); for a directory, its entries with their sizes
 * ("SIZE NAME", "dir NAME"). An error prints "fsum: PATH: reason" and the status is 1.
 * Used to check files on the USB stick (/usb) byte for byte against the host's copy. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int list(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        printf("fsum: %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[512];
        struct stat st;
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (stat(p, &st) != 0)
            printf("fsum: %s: %s\n", p, strerror(errno));
        else if (S_ISDIR(st.st_mode))
            printf("dir %s\n", e->d_name);
        else
            printf("%lld %s\n", (long long)st.st_size, e->d_name);
    }
    closedir(d);
    return 0;
}

static int sum(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        printf("fsum: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (S_ISDIR(st.st_mode))
        return list(path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("fsum: %s: %s\n", path, strerror(errno));
        return 1;
    }
    static char buf[4000];
    uint64_t h = 0xcbf29ce484222325ull, total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            printf("fsum: %s: %s\n", path, strerror(errno));
            close(fd);
            return 1;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ (unsigned char)buf[i]) * 0x100000001b3ull;
        total += (uint64_t)n;
    }
    close(fd);
    printf("%llu %016llx %s\n", (unsigned long long)total, (unsigned long long)h, path);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fsum PATH...\n");
        return 2;
    }
    int bad = 0;
    for (int i = 1; i < argc; i++)
        bad |= sum(argv[i]);
    return bad;
}
