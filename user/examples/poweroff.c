/* poweroff: powers the machine off (Linux reboot(2) with LINUX_REBOOT_CMD_POWER_OFF). */
#include <stdio.h>
#include <sys/reboot.h>
#include <unistd.h>

int main(void)
{
    sync();
    if (reboot(RB_POWER_OFF) < 0) {
        perror("poweroff");
        return 1;
    }
    return 0;
}
