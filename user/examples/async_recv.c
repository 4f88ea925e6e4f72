/* The seed's shmcomm async_recv example, as the tutorial shows it (run after async_send). */
#include <stdlib.h>
#include <stdio.h>
#include <shmcomm_user.h>

int main() {
    printf ("Receiver\n");

    int fd = shmcomm_open_receive (153, SHMCOMM_CONNECT_CH,
                                   NULL, sizeof(int), -1);

    printf ("Value of res: %d\n", fd);
    if (fd < 0) {
        printf("Error\n"); return 0;
    }


    printf ("Recv Channel Key: %u\n", get_vshm_key(fd));

    int X;
    shmcomm_read (fd, &X, sizeof(int));
    printf ("Received X=%d\n", X);
    shmcomm_close (fd);

    return 0;
}
