/* lsusb: lists the USB devices the kernel enumerated (/dev/usb): one line per device
 * ("Bus 001 Port 5 Device 001: ID 0627:0001 QEMU QEMU USB Keyboard"); with -v also the
 * controllers, each device's speed and class, and its interfaces and endpoints. Without a
 * host controller it says so and exits with status 1. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    int verbose = argc > 1 && !strcmp(argv[1], "-v");
    FILE *f = fopen("/dev/usb", "r");
    if (!f) {
        perror("lsusb: /dev/usb");
        return 1;
    }
    char line[512];
    int status = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "usb: ", 5)) { /* "usb: no USB host controller found ..." */
            fprintf(stderr, "lsusb: %s", line + 5);
            status = 1;
            continue;
        }
        if (!verbose && (line[0] == '\t' || (!strncmp(line, "Bus ", 4) && strstr(line, ": xHCI"))))
            continue;
        fputs(line, stdout);
    }
    fclose(f);
    return status;
}
