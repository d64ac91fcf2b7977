/* Two mmapped chunks freed with glibc 2.43's large tcache on (GLIBC_TUNABLES=
 * glibc.malloc.tcache_max=1000000): free() gives them to the tcache instead of
 * munmap.  Writes {"a": mem, "b": mem} to argv[1]; stops in checkpoint() after
 * free(a), and again after free(b). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

int main(int argc, char **argv) {
    void *keep = malloc(64);
    char *a = malloc(200000), *b = malloc(300000);
    memset(a, 'A', 64);
    memset(b, 'B', 64);
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "{\"a\": %lu, \"b\": %lu}\n", (unsigned long)a, (unsigned long)b);
    fclose(f);
    free(a);
    checkpoint();
    free(b);
    checkpoint();
    free(keep);
    return 0;
}
