/* A mmapped chunk grown by realloc: each realloc that changes its page count remaps it
 * (mremap_chunk).  Writes {"remaps": N, "mapped": bytes of its mapping, "hblkhd":
 * mallinfo2's} to argv[1], then stops in checkpoint(). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

int main(int argc, char **argv) {
    size_t sizes[] = {200000, 300000, 400000, 500000};
    char *p = malloc(sizes[0]);
    int remaps = 0;
    for (int i = 1; i < 4; i++) {
        p = realloc(p, sizes[i]);
        remaps++;
    }
    size_t mapped = ((size_t *)p)[-2] & ~7UL;  /* prev_size: the offset, 0 here */
    mapped = (((size_t *)p)[-1] & ~7UL) + 2 * sizeof(size_t) + mapped;
    struct mallinfo2 mi = mallinfo2();
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "{\"remaps\": %d, \"mapped\": %zu, \"hblkhd\": %zu}\n", remaps, mapped,
            mi.hblkhd);
    fclose(f);
    checkpoint();
    free(p);
    return 0;
}
