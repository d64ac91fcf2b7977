/* Many small chunks for streaming tests: N chunks of 16..112 bytes, every third freed.
   Writes its truth to the file argv[2], one line per allocation: "ADDR inuse|freed",
   then stops in checkpoint(). */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    FILE *truth = fopen(argc > 2 ? argv[2] : "/dev/null", "w");
    void **p = malloc((size_t)n * sizeof(void *));
    if (!truth || !p) return 1;
    for (long i = 0; i < n; i++) p[i] = malloc(16 + (size_t)(i % 7) * 16);
    for (long i = 0; i < n; i++)
        fprintf(truth, "%p %s\n", p[i], i % 3 == 0 ? "freed" : "inuse");
    fclose(truth);
    for (long i = 0; i < n; i += 3) free(p[i]);
    checkpoint();
    return 0;
}
