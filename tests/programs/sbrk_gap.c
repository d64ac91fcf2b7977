/* sbrk_gap.c MODE TRUTH: a main heap in two regions with foreign memory between them
   ("gap"), or a chunk marked free by its neighbour but in no list ("orphan").  Writes
   the truth as JSON to TRUTH (and malloc_info's XML to TRUTH.xml), then stops in
   checkpoint().  Both files are opened unbuffered before the heap work, so writing
   them allocates nothing: mallinfo and malloc_info describe the heap at the stop.

   gap: chunks in malloc's first region (some freed), then sbrk(4096) by the program
   itself, then a request top cannot serve: glibc finds the break moved, ends the old
   region with fenceposts, frees the old top and starts a region after the foreign
   page; more chunks there (some freed).  The truth has mallinfo (as this glibc
   reports it) and a chunk of each region.
   orphan: PREV_INUSE of the chunk after an in-use chunk is cleared (what unsafe unlink
   and the poison NUL byte leave): that chunk is then marked free but in no list. */
#define _GNU_SOURCE
#include <gnu/libc-version.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

#define HDR (2 * sizeof(size_t))
#define CH(p) ((uintptr_t)(p) - HDR)

static void *keep[256];

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    int major = 0, minor = 0;
    sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor);
    char xml_path[4096];
    snprintf(xml_path, sizeof xml_path, "%s.xml", argv[2]);
    FILE *out = fopen(argv[2], "w"), *xml = fopen(xml_path, "w");
    if (!out || !xml) return 2;
    setvbuf(out, NULL, _IONBF, 0);
    setvbuf(xml, NULL, _IONBF, 0);
    uintptr_t first = 0, after = 0, victim = 0, foreign = 0;
    if (!strcmp(argv[1], "gap")) {
        static const size_t sizes[4] = {0x18, 0x48, 0x98, 0x418};
        for (int i = 0; i < 100; i++) keep[i] = malloc(sizes[i % 4]);
        for (int i = 0; i < 100; i += 3) { free(keep[i]); keep[i] = NULL; }
        first = CH(keep[1]);
        char *brk0 = sbrk(4096);  /* foreign: malloc's region can no longer grow in place */
        foreign = (uintptr_t)brk0;
        memset(brk0, 0x41, 4096);
        keep[100] = malloc(0x1f000);  /* more than top holds, under the mmap threshold */
        for (int i = 101; i < 200; i++) keep[i] = malloc(sizes[i % 4] + 0x10);
        for (int i = 101; i < 200; i += 3) { free(keep[i]); keep[i] = NULL; }
        after = CH(keep[199]);
    } else if (!strcmp(argv[1], "orphan")) {
        for (int i = 0; i < 8; i++) keep[i] = malloc(0x88);
        victim = CH(keep[3]);
        ((size_t *)keep[4])[-1] &= ~(size_t)1;  /* chunk 3 now looks free, in no list */
        ((size_t *)keep[4])[-2] = 0x90;
    } else {
        return 2;
    }
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo mi = mallinfo();  /* 2.31 has no mallinfo2; these heaps are small */
    fprintf(out, "{\"mode\": \"%s\", \"glibc\": \"%d.%d\", \"first\": %lu, \"after\": %lu, "
            "\"victim\": %lu, \"foreign\": %lu, \"mallinfo\": {\"arena\": %u, "
            "\"ordblks\": %u, \"smblks\": %u, \"hblks\": %u, \"hblkhd\": %u, "
            "\"uordblks\": %u, \"fordblks\": %u, \"fsmblks\": %u, \"keepcost\": %u}, "
            "\"xml\": \"%s\"}\n", argv[1], major, minor, (unsigned long)first,
            (unsigned long)after, (unsigned long)victim, (unsigned long)foreign,
            (unsigned)mi.arena, (unsigned)mi.ordblks, (unsigned)mi.smblks,
            (unsigned)mi.hblks, (unsigned)mi.hblkhd, (unsigned)mi.uordblks,
            (unsigned)mi.fordblks, (unsigned)mi.fsmblks, (unsigned)mi.keepcost, xml_path);
    malloc_info(0, xml);
    checkpoint();  /* the files are written (unbuffered); closing frees: after the stop */
    fclose(out);
    fclose(xml);
    return 0;
}
