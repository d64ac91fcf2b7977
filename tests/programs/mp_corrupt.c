/* mp_.tcache_bins overwritten with a huge number, as how2heap's tcache_relative_write
   does (there through a relative write from the tcache; here directly).

   usage: mp_corrupt MODE TRUTH_FILE   (MODE: "stop" or "wait")
   Mallocs and frees (two chunks in the tcache, one in a fastbin-sized slot), writes
   {"pid", "mp", "tcache"} to TRUTH_FILE, then finds mp_ in libc's writable data by
   its tcache fields (tcache_bins 64, tcache_max_bytes 1032, tcache_count 7, right
   after sbrk_base, which points at the heap) and sets tcache_bins to 0x7fffffff0000.
   No malloc or free runs after that.  Stops in checkpoint(); "wait" then sleeps. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile int go_on;

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

static uintptr_t *find_tcache_bins(uintptr_t heap_lo, uintptr_t heap_hi)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    uintptr_t *found = NULL;
    int after_libc = 0;
    while (maps && !found && fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3)
            continue;
        int libc = strstr(line, "/libc.so.6") || strstr(line, "/libc-2.");
        if (perms[1] != 'w' || !(libc || after_libc)) {
            after_libc = libc;
            continue;
        }
        after_libc = libc;
        for (uintptr_t *w = (uintptr_t *)lo; w + 4 <= (uintptr_t *)hi; w++)
            if (w[0] >= heap_lo && w[0] < heap_hi && w[1] == 64 && w[2] == 1032 && w[3] == 7) {
                found = w + 1;
                break;
            }
    }
    if (maps)
        fclose(maps);
    return found;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE TRUTH_FILE\n", argv[0]);
        return 2;
    }
    void *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = malloc(40);
    free(p[1]);
    free(p[2]);
    uintptr_t heap_lo = (uintptr_t)p[0] & ~(uintptr_t)0xfffff, heap_hi = (uintptr_t)sbrk(0);
    FILE *f = fopen(argv[2], "w");
    if (!f)
        return 3;
    uintptr_t *bins = find_tcache_bins(heap_lo, heap_hi);
    if (!bins)
        return 4;
    fprintf(f, "{\"pid\": %d, \"tcache_bins\": %lu, \"tcache\": [%lu, %lu]}\n", (int)getpid(),
            (unsigned long)bins, (unsigned long)p[2], (unsigned long)p[1]);
    fclose(f);
    *bins = 0x7fffffff0000;
    checkpoint();
    while (!strcmp(argv[1], "wait") && !go_on) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}
