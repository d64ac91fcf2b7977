/* listopts.c MODE TRUTH: chunks of sizes no other allocation has, in known states and
   with known contents, for ptlist's filters, preview and summary.  Writes the truth as
   JSON to TRUTH (opened unbuffered first: writing it allocates nothing), then stops in
   checkpoint().  MODE is unused (the test harness passes one).

   A: 12 in use (request 0x1e8), each starting with "chunk-A-NN" and bytes 1, 2.
   B: 10 of request 0x2d8, the first 7 freed (a tcache bin's worth).
   C: 9 of request 0x58, all freed (7 to the tcache, then fastbins where glibc has them).
   D: 8 of request 0x5f8 with a small guard after each, d0, d2, d4 freed (bins). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

#define HDR (2 * sizeof(size_t))

static void *a[12], *b[10], *c[9], *d[8], *g[8];

static void record(FILE *out, int *first, const char *group, void *p, int freed)
{
    size_t size = ((size_t *)p)[-1] & ~(size_t)7;  /* read before free: the header */
    fprintf(out, "%s{\"group\":\"%s\",\"chunk\":%lu,\"size\":%lu,\"freed\":%d}",
            *first ? "" : ",", group, (unsigned long)((uintptr_t)p - HDR),
            (unsigned long)size, freed);
    *first = 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    FILE *out = fopen(argv[2], "w");
    if (!out) return 2;
    setvbuf(out, NULL, _IONBF, 0);
    for (int i = 0; i < 12; i++) {
        a[i] = malloc(0x1e8);
        memset(a[i], 0, 0x1e8);
        snprintf(a[i], 0x1e8, "chunk-A-%02d\001\002tail", i);
    }
    for (int i = 0; i < 10; i++) { b[i] = malloc(0x2d8); memset(b[i], 'B', 0x2d8); }
    for (int i = 0; i < 9; i++) c[i] = malloc(0x58);
    for (int i = 0; i < 8; i++) { d[i] = malloc(0x5f8); g[i] = malloc(0x18); }
    int first = 1;
    fprintf(out, "{\"records\":[");
    for (int i = 0; i < 12; i++) record(out, &first, "A", a[i], 0);
    for (int i = 0; i < 10; i++) record(out, &first, "B", b[i], i < 7);
    for (int i = 0; i < 9; i++) record(out, &first, "C", c[i], 1);
    for (int i = 0; i < 8; i++) record(out, &first, "D", d[i], i % 2 == 0 && i < 6);
    fprintf(out, "]}\n");
    for (int i = 0; i < 7; i++) free(b[i]);
    for (int i = 0; i < 9; i++) free(c[i]);
    free(d[0]);
    free(d[2]);
    free(d[4]);
    checkpoint();
    return 0;
}
