/* Benchmark target: N chunks of 16..112 bytes (request sizes), every third freed. */
#include <stdlib.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    void **p = malloc((size_t)n * sizeof(void *));
    for (long i = 0; i < n; i++) p[i] = malloc(16 + (size_t)(i % 7) * 16);
    for (long i = 0; i < n; i += 3) free(p[i]);
    checkpoint();
    return 0;
}
