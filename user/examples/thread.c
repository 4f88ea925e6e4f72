/* thread: the pthreads program of the tutorial's shell slides (`nowait thread`, `ps -t`,
 * `kill -c`). The slides show only its output; this source reproduces that output:
 *
 *   In main: creating thread 1
 *   In main: creating thread 2
 *   Hello World! It's me, thread #1!
 *   Main thread!
 *   Child thread 1!
 *   Hello World! It's me, thread #2!
 *   Child thread 2!
 *   Child thread 1!
 *   Child thread 2!
 *   Main thread!
 *   ...
 *
 * (the interleaving depends on the scheduler). While it runs, `ps -t` shows the process and
 * its two threads (3 tasks, plus the shell's), and `kill -c` marks it for termination. The
 * loops are bounded (ITERATIONS rounds, one second apart) so it also ends by itself, after
 * about ITERATIONS seconds, with "Main thread done" as its last line.
 */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#define NUM_THREADS 2
#define ITERATIONS 5

static void *child(void *arg)
{
    long id = (long)arg;
    printf("Hello World! It's me, thread #%ld!\n", id);
    for (int i = 0; i < ITERATIONS; i++) {
        printf("Child thread %ld!\n", id);
        sleep(1);
    }
    return NULL;
}

int main(int argc, char *argv[])
{
    pthread_t threads[NUM_THREADS];

    for (long t = 0; t < NUM_THREADS; t++) {
        printf("In main: creating thread %ld\n", t + 1);
        int rc = pthread_create(&threads[t], NULL, child, (void *)(t + 1));
        if (rc) {
            printf("ERROR; return code from pthread_create() is %d\n", rc);
            return 1;
        }
    }
    for (int i = 0; i < ITERATIONS; i++) {
        printf("Main thread!\n");
        sleep(1);
    }
    for (long t = 0; t < NUM_THREADS; t++)
        pthread_join(threads[t], NULL);
    printf("Main thread done\n");
    return 0;
}
