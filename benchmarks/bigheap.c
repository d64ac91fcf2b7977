/* Benchmark target: N chunks of 16..112 bytes (request sizes), every third freed.
   Built with -DBINNED, every 40th chunk is 0x1f0 bytes and freed as well: chunks in
   the unsorted bin (marked free) spread among the fastbins' over the whole heap. */
#include <stdlib.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

#ifdef BINNED
#define BIG(i) ((i) % 40 == 20)
#else
#define BIG(i) 0
#endif

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    void **p = malloc((size_t)n * sizeof(void *));
    for (long i = 0; i < n; i++) p[i] = malloc(BIG(i) ? 0x1f0 : 16 + (size_t)(i % 7) * 16);
    for (long i = 0; i < n; i += 3) free(p[i]);
    for (long i = 0; i < n; i++)
        if (BIG(i) && i % 3) free(p[i]);
    checkpoint();
    return 0;
}
