/* lsboot: lists /boot with opendir/readdir and stat. */
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

int main(void)
{
    DIR *d = opendir("/boot");
    if (!d) {
        perror("opendir /boot");
        return 1;
    }
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        char path[300];
        struct stat st;
        snprintf(path, sizeof path, "/boot/%s", e->d_name);
        if (stat(path, &st) == 0)
            printf("%8lld %s\n", (long long)st.st_size, e->d_name);
        n++;
    }
    closedir(d);
    printf("%d files\n", n);
    return 0;
}
