/* Long free lists of every kind, for the spill tests: N chunks of 16 to 1,008 bytes,
   each followed by a small in-use guard (no two free chunks touch, so nothing merges);
   every other one is freed.  Tcache bins fill first, small sizes then go to fastbins,
   larger ones to the unsorted bin; a malloc that no free chunk fits sorts those into
   small and large bins, and a last round of frees leaves some in the unsorted bin.
   Writes its truth to argv[2] as the scenario's JSON does (each freed user pointer as
   a "freed" record, glibc's own mallinfo2) and malloc_info's XML to argv[2].xml; then
   stops in checkpoint(). */
#include <gnu/libc-version.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000;
    /* both files open, with static buffers, before the heap is built: writing the
       truth must not allocate (a 4 KB stdio buffer would consolidate the fastbins) */
    static char tbuf[1 << 16], ibuf[1 << 16];
    char xml[4096];
    snprintf(xml, sizeof xml, "%s.xml", argc > 2 ? argv[2] : "/dev/null");
    FILE *truth = fopen(argc > 2 ? argv[2] : "/dev/null", "w");
    FILE *info = fopen(xml, "w");
    if (!truth || !info) return 1;
    setvbuf(truth, tbuf, _IOFBF, sizeof tbuf);
    setvbuf(info, ibuf, _IOFBF, sizeof ibuf);
    void **p = malloc((size_t)n * sizeof(void *));
    void **guard = malloc((size_t)n * sizeof(void *));
    if (!p || !guard) return 1;
    for (long i = 0; i < n; i++) {
        p[i] = malloc(16 + (size_t)(i % 63) * 16);
        guard[i] = malloc(24);
    }
    long late = n - n / 10;  /* the last tenth is freed after the sort */
    for (long i = 0; i < late; i += 2) free(p[i]);
    void *sorter = malloc(8192);  /* fits no free chunk: the unsorted bin is sorted */
    for (long i = late + (late % 2); i < n; i += 2) free(p[i]);
    malloc_info(0, info);
    fflush(info);
    struct mallinfo2 mi = mallinfo2();
    fprintf(truth, "{\"mode\": \"%ld\", \"glibc\": \"%s\", \"pointer_size\": %zu, "
            "\"pid\": %d, \"threads\": 1,\n \"mallinfo2\": {\"arena\": %zu, "
            "\"ordblks\": %zu, \"smblks\": %zu, \"hblks\": %zu, \"hblkhd\": %zu, "
            "\"uordblks\": %zu, \"fordblks\": %zu, \"fsmblks\": %zu, \"keepcost\": %zu},"
            "\n \"records\": [", n, gnu_get_libc_version(), sizeof(void *), (int)getpid(),
            mi.arena, mi.ordblks, mi.smblks, mi.hblks, mi.hblkhd, mi.uordblks, mi.fordblks,
            mi.fsmblks, mi.keepcost);
    for (long i = 0; i < n; i += 2)
        fprintf(truth, "%s{\"mem\": %lu, \"kind\": \"freed\"}", i ? ",\n  " : "",
                (unsigned long)p[i]);
    fprintf(truth, "]}\n");
    fflush(truth);
    checkpoint();
    fclose(truth);
    fclose(info);
    free(sorter);
    return 0;
}
