/* Scenario program for multiheap's tests: shapes a heap, writes the truth, stops.

   usage: scenario MODE TRUTH_FILE
   MODE:  basic    every bin kind, mmapped chunks, one thread (the main one)
          threads  basic, plus worker threads with their own arenas and tcaches
          cycle    basic, then a fastbin (or tcache on 2.43+) list made cyclic
          badsize  basic, then an in-use chunk's size field overwritten
          badtop   basic, then the top chunk's size made enormous

   The truth (JSON in TRUTH_FILE, malloc_info's XML in TRUTH_FILE.xml) is taken last,
   just before checkpoint(), with no allocation in between: the FILEs use static
   buffers.  A test stops the program in checkpoint() and compares the tool with it. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <gnu/libc-version.h>
#include <sys/syscall.h>

#define MAXREC 4096
struct rec { const char *kind; void *mem; size_t req; long tid; };
static struct rec recs[MAXREC];
static int nrecs;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t ready, done;
static char jbuf[1 << 16], xbuf[1 << 16];

static long tid(void) { return (long)syscall(SYS_gettid); }

static void note(const char *kind, void *mem, size_t req)
{
    pthread_mutex_lock(&lock);
    if (nrecs < MAXREC)
        recs[nrecs++] = (struct rec){kind, mem, req, tid()};
    pthread_mutex_unlock(&lock);
}

static void *live(size_t n)
{
    void *p = malloc(n);
    memset(p, 0x41, n);
    note("live", p, n);
    return p;
}

/* The test stops here; its arguments make the frame easy to check. */
__attribute__((noinline)) void checkpoint(const char *mode)
{
    __asm__ volatile("" ::"r"(mode) : "memory");
}

static void **grab(size_t req, int n)
{
    void **p = calloc(n, sizeof *p); /* calloc'd now, so later frees cannot reuse it */
    for (int i = 0; i < n; i++)
        p[i] = malloc(req);
    return p;
}

static void release(void **p, int from, int to, size_t req, const char *kind)
{
    for (int i = from; i < to; i++) {
        free(p[i]);
        note(kind, p[i], req);
    }
}

/* Every allocation first, then the frees, so no later malloc takes a freed chunk
   back or splits it: each record says where glibc keeps the chunk at checkpoint().
   Freed chunks sit between in-use guards, so nothing coalesces. */
static void shape(void)
{
    size_t sizes[] = {0x420, 0x500, 0x800, 0x1000, 0x3000, 0x600};
    void *b[6], *u, *s[9], *f[12];
    for (int i = 0; i < 20; i++)
        live(16 + 24 * i);
    void **t20 = grab(0x18, 7), **t30 = grab(0x28, 7), **t100 = grab(0xf0, 3);
    for (int i = 0; i < 12; i++) {
        f[i] = malloc(0x38);
        live(0x48);
    }
    for (int i = 0; i < 6; i++) {
        b[i] = malloc(sizes[i]);
        live(0x48);
    }
    u = malloc(0x3800);
    live(0x48);
    for (int i = 0; i < 9; i++) {
        s[i] = malloc(0x88);
        live(0x48);
    }
    live(200 * 1024); /* mmapped: above the 128 KiB threshold */
    live(300 * 1024);

    /* Small and large bins: free chunks too big for the tcache, then one malloc
       larger than all of them (served by top) sorts the unsorted bin into bins. */
    release(b, 0, 6, 0, "binned");
    live(0x5000);
    /* Unsorted bin: frees after the last malloc stay there. */
    release(&u, 0, 1, 0x3800, "binned");
    /* 0x90: the first 7 fill its tcache bin, the rest go to the unsorted bin
       (all to the tcache where the tcache holds more, hence "binned" = bin or tcache). */
    release(s, 0, 7, 0x88, "tcache");
    release(s, 7, 9, 0x88, "binned");
    release(t20, 0, 7, 0x18, "tcache");
    release(t30, 0, 7, 0x28, "tcache");
    release(t100, 0, 3, 0xf0, "tcache");
    /* 0x40: 7 fill the tcache bin, 5 more go to the fastbin (glibc < 2.43). */
    release(f, 0, 7, 0x38, "tcache");
    release(f, 7, 12, 0x38, "fast_or_tcache");
}

static void *worker(void *arg)
{
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < 10 + n; i++)
        live(32 + 16 * i);
    void **t = grab(0x18 + 0x10 * n, 3 + n);
    void *x = malloc(0x900);
    live(0x68);
    release(t, 0, 3 + n, 0x18 + 0x10 * n, "tcache");
    release(&x, 0, 1, 0x900, "binned");
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&done); /* parked while the test looks */
    return NULL;
}

static void write_truth(FILE *j, FILE *x, const char *mode, int nthreads)
{
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
#else
    struct mallinfo mi = mallinfo();
#endif
    malloc_info(0, x);
    fflush(x);
    fprintf(j, "{\"mode\": \"%s\", \"glibc\": \"%s\", \"pointer_size\": %d, \"pid\": %d,"
               " \"threads\": %d,\n \"mallinfo2\": {\"arena\": %zu, \"ordblks\": %zu,"
               " \"smblks\": %zu, \"hblks\": %zu, \"hblkhd\": %zu, \"uordblks\": %zu,"
               " \"fordblks\": %zu, \"fsmblks\": %zu, \"keepcost\": %zu},\n \"records\": [",
            mode, gnu_get_libc_version(), (int)sizeof(void *), (int)getpid(), nthreads,
            (size_t)mi.arena, (size_t)mi.ordblks, (size_t)mi.smblks, (size_t)mi.hblks,
            (size_t)mi.hblkhd, (size_t)mi.uordblks, (size_t)mi.fordblks,
            (size_t)mi.fsmblks, (size_t)mi.keepcost);
    for (int i = 0; i < nrecs; i++)
        fprintf(j, "%s\n  {\"kind\": \"%s\", \"mem\": %lu, \"req\": %zu, \"tid\": %ld}",
                i ? "," : "", recs[i].kind, (unsigned long)(uintptr_t)recs[i].mem,
                recs[i].req, recs[i].tid);
    fprintf(j, "]}\n");
    fflush(j);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s basic|threads|cycle|badsize|badtop TRUTH_FILE\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    char xpath[4096];
    snprintf(xpath, sizeof xpath, "%s.xml", argv[2]);
    FILE *j = fopen(argv[2], "w"), *x = fopen(xpath, "w");
    if (!j || !x) {
        perror("fopen");
        return 2;
    }
    setvbuf(j, jbuf, _IOFBF, sizeof jbuf);
    setvbuf(x, xbuf, _IOFBF, sizeof xbuf);
    setvbuf(stdout, NULL, _IONBF, 0);

    int nthreads = strcmp(mode, "threads") == 0 ? 3 : 0;
    pthread_t th[3];
    pthread_barrier_init(&ready, NULL, nthreads + 1);
    pthread_barrier_init(&done, NULL, nthreads + 1);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    shape();
    if (nthreads)
        pthread_barrier_wait(&ready);
    write_truth(j, x, mode, nthreads);

    if (strcmp(mode, "cycle") == 0) {
        /* The last freed 0x40 chunk (its list's head) points to itself, encoded with
           safe-linking where the glibc has it. */
        for (int i = nrecs - 1; i >= 0; i--)
            if (strcmp(recs[i].kind, "fast_or_tcache") == 0) {
                uintptr_t *fd = (uintptr_t *)recs[i].mem, p = (uintptr_t)recs[i].mem;
#if __GLIBC__ == 2 && __GLIBC_MINOR__ < 43
                uintptr_t self = p - 2 * sizeof(size_t); /* fastbins link chunks */
#else
                uintptr_t self = p; /* no fastbins: a tcache entry, linked by mem */
#endif
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32)
                *fd = (p >> 12) ^ self;
#else
                *fd = self;
#endif
                break;
            }
    } else if (strcmp(mode, "badtop") == 0) {
        /* The main heap ends at the program break and top is its last chunk, keepcost
           bytes long (mallinfo2's keepcost is main_arena's top size). */
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)
        size_t keep = mallinfo2().keepcost;
#else
        size_t keep = (size_t)mallinfo().keepcost;
#endif
        size_t *top = (size_t *)((char *)sbrk(0) - keep);
        top[1] = ((size_t)1 << (sizeof(size_t) * 8 - 2)) | 1;
    } else if (strcmp(mode, "badsize") == 0) {
        /* An in-use chunk claims to be far larger than the heap. */
        size_t *hdr = (size_t *)recs[5].mem - 1;
        *hdr = ((size_t)1 << (sizeof(size_t) * 8 - 4)) | 1;
    }
    checkpoint(mode);
    if (nthreads) {
        pthread_barrier_wait(&done);
        for (int i = 0; i < nthreads; i++)
            pthread_join(th[i], NULL);
    }
    return 0;
}
