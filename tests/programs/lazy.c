/* A heap that is not there yet: stops before the first malloc, or with a thread that
   never allocated.

   usage: lazy MODE TRUTH_FILE   (MODE: "early" or "thread"; add "-wait" to sleep after
   the stop, so that a test can attach or gcore it, e.g. "thread-wait")
   early:  checkpoint() runs before anything has called malloc (no stdio either).
   thread: main mallocs and frees, starts a thread that only sleeps (it never calls
           malloc, so its tcache pointer stays NULL), then stops in checkpoint().
   Writes {"pid": ..., "tid": ... (the idle thread's, 0 in early mode)} to TRUTH_FILE
   with write(2) only, so "early" really has no malloc before the stop. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

volatile int go_on;
volatile int idle_tid;

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

static void nap(void)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static void *idle(void *arg)
{
    (void)arg;
    idle_tid = (int)syscall(SYS_gettid);
    while (!go_on)
        nap();
    return NULL;
}

static void put_num(char *buf, size_t *n, long v)
{
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k)
        buf[(*n)++] = tmp[--k];
}

static int write_truth(const char *path)
{
    char buf[128];
    size_t n = 0;
    memcpy(buf, "{\"pid\": ", 8);
    n = 8;
    put_num(buf, &n, getpid());
    memcpy(buf + n, ", \"tid\": ", 9);
    n += 9;
    put_num(buf, &n, idle_tid);
    memcpy(buf + n, "}\n", 2);
    n += 2;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, n) != (ssize_t)n)
        return 3;
    return close(fd);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int wait = strstr(argv[1], "-wait") != NULL;
    pthread_t th;
    if (!strncmp(argv[1], "thread", 6)) {
        void *p[4];
        for (int i = 0; i < 4; i++)
            p[i] = malloc(40);
        free(p[1]);
        free(p[2]);
        if (pthread_create(&th, NULL, idle, NULL))
            return 4;
        while (!idle_tid)
            nap();
    }
    if (write_truth(argv[2]))
        return 3;
    checkpoint();
    while (wait && !go_on)
        nap();
    return 0;
}
