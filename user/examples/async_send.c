/* The seed's shmcomm async_send example, as the tutorial shows it; an optional argument
 * names another channel key than 153. */
#include <stdlib.h>
#include <stdio.h>
#include <shmcomm_user.h>
#include <shmcomm_internal.h>

int main(int argc, char *argv[]) {
    unsigned key = argc > 1 ? (unsigned)atoi(argv[1]) : 153; /* the seed's 153 unless told */
    printf ("Sender\n");
    shmcomm_channel_t comm_channel;
    int res = shmcomm_open_send (key, (SHMCOMM_CREATE_CH | SHMCOMM_ASYNC_CH),
                                NULL, sizeof(int), -1, &comm_channel);
    if (res < 0) {
        printf("Error\n"); return 0;
    }

    int X = 10;
    printf ("Sending X\n");
    shmcomm_write (comm_channel, &X, sizeof(int));
    printf ("Sent X=%d\n", X);

    if (shmcomm_close (comm_channel) < 0) {
        printf ("Error in closing channel.\n"); return -1;
    }
    printf ("Channel successfully closed.\n");
    return 0;
}
