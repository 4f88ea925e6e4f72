/* thread_storm: a hostile program — creates threads (small stacks) that all wait on one
 * condition, until pthread_create fails (EAGAIN or ENOMEM), then releases and joins them all.
 * The kernel must refuse cleanly, and every thread must exit. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREADS 20000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go = PTHREAD_COND_INITIALIZER;
static int released, finished;

static void *worker(void *arg)
{
    pthread_mutex_lock(&lock);
    while (!released)
        pthread_cond_wait(&go, &lock);
    finished++;
    pthread_mutex_unlock(&lock);
    return arg;
}

int main(void)
{
    static pthread_t t[MAX_THREADS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 16384);
    int n = 0, err = 0;
    while (n < MAX_THREADS) {
        err = pthread_create(&t[n], &attr, worker, (void *)(long)n);
        if (err)
            break;
        n++;
    }
    printf("thread_storm: %d threads, then pthread_create failed with %s\n", n,
           err == EAGAIN ? "EAGAIN" : err == ENOMEM ? "ENOMEM" : err ? strerror(err) : "no error (limit of the program)");
    fflush(stdout);
    pthread_mutex_lock(&lock);
    released = 1;
    pthread_cond_broadcast(&go);
    pthread_mutex_unlock(&lock);
    int joined = 0;
    for (int i = 0; i < n; i++) {
        void *r;
        if (pthread_join(t[i], &r) == 0 && (long)r == i)
            joined++;
    }
    printf("thread_storm: %d of %d threads joined, %d finished\n", joined, n, finished);
    return joined == n && finished == n ? 0 : 1;
}
