/* lspci: lists the PCI functions the kernel enumerated (/dev/pci, the kernel's `pci -v`):
 * one line per function; with -v also its interrupt, BARs and MSI capability. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    int verbose = argc > 1 && !strcmp(argv[1], "-v");
    FILE *f = fopen("/dev/pci", "r");
    if (!f) {
        perror("lspci: /dev/pci");
        return 1;
    }
    char line[256];
    int first = 1;
    while (fgets(line, sizeof line, f)) {
        if (first) { /* "pci: N function(s) via METHOD" */
            first = 0;
            if (!verbose) continue;
        }
        if (line[0] == '\t' && !verbose) continue;
        fputs(line, stdout);
    }
    fclose(f);
    return 0;
}
