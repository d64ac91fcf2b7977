/* Mmapped chunks of several kinds, with their truth, for ptlist --mmapped and ptstats.

   usage: mmaps TRUTH_FILE [wait]
   Makes mmapped chunks the ways a program does (malloc, calloc, posix_memalign, realloc
   to a larger size, malloc in a second thread), some mapped before the thread's stack
   so that the kernel merges them with it into one mapping.  Writes to TRUTH_FILE, as
   one JSON object: pid, the user pointers of the mmapped chunks, and mallinfo2's
   hblks/hblkhd.  Then stops in checkpoint() (a debugger's breakpoint); with "wait" it
   sleeps in a loop afterwards so that a test can attach or gcore it. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXP 16
static void *ptrs[MAXP];
static int nptrs;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int thread_ready;
volatile int go_on;

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

static void keep(void *p)
{
    if (!p || nptrs == MAXP)
        exit(3);
    ptrs[nptrs++] = p;
}

static void *worker(void *arg)
{
    (void)arg;
    void *p = malloc(250000); /* a thread arena's mmapped chunk */
    memset(p, 0x5a, 64);
    pthread_mutex_lock(&lock);
    keep(p);
    thread_ready = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s TRUTH_FILE [wait]\n", argv[0]);
        return 2;
    }
    void *small = malloc(100); /* the main heap exists before the mmaps */
    keep(malloc(200000));
    keep(calloc(1, 300000));
    /* mapped right before the thread's stack: the kernel merges the two mappings */
    pthread_t th;
    if (pthread_create(&th, NULL, worker, NULL))
        return 4;
    pthread_mutex_lock(&lock);
    while (!thread_ready)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    keep(malloc(1 << 20));
    void *al = NULL;
    if (posix_memalign(&al, 65536, 500000))
        return 5;
    keep(al);
    void *grow = malloc(140000);
    memset(grow, 0x11, 16);
    keep(realloc(grow, 600000)); /* mremap'ed larger */
    /* a chunk whose mapping follows other anonymous memory: one page of our own with a
       hole above it exactly the chunk's size, which the next big mmap fills, so the
       kernel merges the two into one mapping that does not start with the chunk */
    long page = sysconf(_SC_PAGESIZE);
    size_t want = 4u << 20, span = (want + 2 * sizeof(size_t) + page - 1) & ~(page - 1);
    char *own = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (own == MAP_FAILED)
        return 7;
    memset(own, 0x41, page);
    munmap(own + page, span);
    char *after = malloc(want);
    keep(after);
    int merged = after == own + page + 2 * sizeof(size_t);
    struct mallinfo2 mi = mallinfo2();
    FILE *f = fopen(argv[1], "w");
    if (!f)
        return 6;
    fprintf(f, "{\"pid\": %d, \"hblks\": %zu, \"hblkhd\": %zu, \"small\": %lu, "
            "\"merged\": %d, \"mmapped\": [", (int)getpid(), mi.hblks, mi.hblkhd,
            (unsigned long)small, merged);
    for (int i = 0; i < nptrs; i++)
        fprintf(f, "%s%lu", i ? ", " : "", (unsigned long)ptrs[i]);
    fprintf(f, "]}\n");
    fclose(f);
    checkpoint();
    while (argc > 2 && !go_on) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}
