/* A program for the tracer's tests: it logs each of its own allocator calls (thread id,
 * op, size, pointer given, pointer returned) to the file $TRACEE_LOG with write(2) from
 * a per-thread static buffer, never through malloc, so the log is the truth a trace must
 * hold.  argv[1] picks a scenario:
 *   normal   two threads, each ~100 calls of every allocator function, then exit 0
 *   double   a double free (glibc aborts)         invalid  free of a pointer never returned
 *   inside   free of a pointer inside a chunk     leak     known leaks from two sites
 *   reuse    a chunk freed and reused             crash    a segfault mid-run
 *   selfkill SIGKILL to itself mid-run            forever  malloc/free until killed
 *   many N   N calls in two threads (benchmarks) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int log_fd = -1;
static __thread char line[160];

static char *hex(char *p, unsigned long v)
{
    char tmp[20];
    int n = 0;
    *p++ = '0';
    *p++ = 'x';
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static void note(const char *op, unsigned long size, void *ptr, void *res)
{
    if (log_fd < 0)
        return;
    char *p = line;
    p = hex(p, (unsigned long)syscall(SYS_gettid));
    *p++ = ' ';
    size_t n = strlen(op);
    memcpy(p, op, n);
    p += n;
    *p++ = ' ';
    p = hex(p, size);
    *p++ = ' ';
    p = hex(p, (unsigned long)ptr);
    *p++ = ' ';
    p = hex(p, (unsigned long)res);
    *p++ = '\n';
    if (write(log_fd, line, (size_t)(p - line)) < 0)
        _exit(3);
}

/* each call goes through a named, non-inlined function: backtraces can be checked */
__attribute__((noinline)) void *do_malloc(size_t n)
{
    void *r = malloc(n);
    note("malloc", n, 0, r);
    return r;
}

__attribute__((noinline)) void do_free(void *p)
{
    note("free", 0, p, 0);
    free(p);
}

__attribute__((noinline)) void *leak_site_one(size_t n) { void *r = malloc(n); note("malloc", n, 0, r); return r; }
__attribute__((noinline)) void *leak_site_two(size_t n) { void *r = calloc(n, 2); note("calloc", n * 2, 0, r); return r; }
__attribute__((noinline)) void double_free_here(void *p) { note("free", 0, p, 0); free(p); }
__attribute__((noinline)) void invalid_free_here(void *p) { note("free", 0, p, 0); free(p); }

static void *work(void *arg)
{
    long rounds = (long)arg;
    void *keep[8] = {0};
    for (long i = 0; i < rounds; i++) {
        int k = (int)(i % 8);
        if (keep[k])
            do_free(keep[k]);
        switch (i % 7) {
        case 0: keep[k] = do_malloc(16 + (size_t)(i % 50) * 8); break;
        case 1: keep[k] = calloc(3, 40); note("calloc", 120, 0, keep[k]); break;
        case 2: {
            void *a = do_malloc(24);
            unsigned long was = (unsigned long)a;
            keep[k] = realloc(a, 200 + (size_t)(i % 5) * 64);
            note("realloc", 200 + (size_t)(i % 5) * 64, (void *)was, keep[k]);
            break;
        }
        case 3: keep[k] = memalign(64, 100); note("memalign", 100, 0, keep[k]); break;
        case 4: {
            void *r = 0;
            if (posix_memalign(&r, 32, 72))
                r = 0;
            note("posix_memalign", 72, 0, r);
            keep[k] = r;
            break;
        }
        case 5: keep[k] = aligned_alloc(128, 256); note("aligned_alloc", 256, 0, keep[k]); break;
        default: keep[k] = valloc(40); note("valloc", 40, 0, keep[k]); break;
        }
    }
    for (int k = 0; k < 8; k++)
        if (keep[k])
            do_free(keep[k]);
    return 0;
}

static void *volatile sink;

static void *spin(void *arg)
{
    long n = (long)arg;
    for (long i = 0; i < n; i++) {
        void *p = malloc(32 + (size_t)(i & 63));
        sink = p;  /* escapes: the pair is not optimised away */
        free(p);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "normal";
    const char *path = getenv("TRACEE_LOG");
    if (path)
        log_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (!strcmp(mode, "normal")) {
        pthread_t t;
        pthread_create(&t, 0, work, (void *)100L);
        work((void *)100L);
        pthread_join(t, 0);
    } else if (!strcmp(mode, "double")) {
        void *a = do_malloc(40), *b = do_malloc(40);
        do_free(a);
        do_free(b);
        double_free_here(a);
    } else if (!strcmp(mode, "invalid")) {
        static long not_heap[4] __attribute__((aligned(16)));
        invalid_free_here(&not_heap[2]);
    } else if (!strcmp(mode, "inside")) {
        char *a = do_malloc(64);
        invalid_free_here(a + 32);
    } else if (!strcmp(mode, "leak")) {
        for (volatile int i = 0; i < 3; i++)  /* one call site: one leak group */
            leak_site_one(100);
        leak_site_two(500);
        do_free(do_malloc(10));
    } else if (!strcmp(mode, "reuse")) {
        void *a = do_malloc(48);
        do_free(a);
        void *b = do_malloc(48);  /* the same chunk, from the tcache */
        do_free(b);
    } else if (!strcmp(mode, "crash")) {
        do_free(do_malloc(10));
        do_malloc(20);
        *(volatile int *)8 = 1;
    } else if (!strcmp(mode, "selfkill")) {
        do_free(do_malloc(10));
        do_malloc(20);
        kill(getpid(), SIGKILL);
    } else if (!strcmp(mode, "forever")) {
        for (;;) {
            do_free(do_malloc(64));
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, 0);
        }
    } else if (!strcmp(mode, "uaf")) {
        long *a = do_malloc(64);
        do_free(a);
        a[3] = 42;  /* write after free, at user offset 24 */
        a[2] = 7;   /* and at 16 */
    } else if (!strcmp(mode, "many")) {
        long n = argc > 2 ? atol(argv[2]) : 10000;
        pthread_t t;
        pthread_create(&t, 0, spin, (void *)(n / 4));
        spin((void *)(n / 4));
        pthread_join(t, 0);
    }
    return 0;
}
