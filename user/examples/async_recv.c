/* The seed's shmcomm async_recv example, as the tutorial shows it (run after async_send); an
 * optional argument names another channel key than 153. */
#include <stdlib.h>
#include <stdio.h>
#include <shmcomm_user.h>

int main(int argc, char *argv[]) {
    unsigned key = argc > 1 ? (unsigned)atoi(argv[1]) : 153; /* the seed's 153 unless told */
    printf ("Receiver\n");

    int fd = shmcomm_open_receive (key, SHMCOMM_CONNECT_CH,
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
