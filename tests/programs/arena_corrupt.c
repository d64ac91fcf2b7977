/* main_arena.system_mem overwritten (an arena field, where mp_corrupt.c damages mp_).

   usage: arena_corrupt MODE TRUTH_FILE   (MODE: "stop" or "wait")
   Mallocs and frees (two chunks in the tcache, one large chunk in the unsorted bin),
   finds main_arena's system_mem from the unsorted bin's head (the freed chunk's fd
   points into main_arena) as the first word after it equal to mallinfo2().arena,
   writes {"system_mem_at", "system_mem", "tcache", "unsorted", "guard"} to TRUTH_FILE
   (opened, with a static buffer, before any chunk is freed; closing it frees its FILE
   into the tcache, never touching the unsorted chunk),
   then sets system_mem to 0x4141414141410000.  No malloc or free runs after that.
   Stops in checkpoint(); "wait" then sleeps. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

volatile int go_on;

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE TRUTH_FILE\n", argv[0]);
        return 2;
    }
    static char buf[4096];
    FILE *f = fopen(argv[2], "w"); /* before the heap is set up: its FILE and buffer */
    if (!f)                        /* take nothing from the chunks freed below */
        return 3;
    setvbuf(f, buf, _IOFBF, sizeof buf);
    void *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = malloc(40);
    void *big = malloc(0x500), *guard = malloc(40); /* guard: big does not merge with top */
    memset(guard, 1, 40);
    free(p[1]);
    free(p[2]);
    free(big); /* too big for the tcache: the unsorted bin */
    struct mallinfo2 mi = mallinfo2();
    uintptr_t *head = *(uintptr_t **)big; /* fd: the unsorted bin's head in main_arena */
    uintptr_t *sys = NULL;
    for (int i = 0; i < 0x200 && !sys; i++)
        if (head[i] == mi.arena)
            sys = &head[i];
    if (!sys)
        return 4;
    fprintf(f, "{\"system_mem_at\": %lu, \"system_mem\": %lu, "
               "\"tcache\": [%lu, %lu], \"unsorted\": %lu, \"guard\": %lu}\n",
            (unsigned long)sys, (unsigned long)*sys, (unsigned long)p[2],
            (unsigned long)p[1], (unsigned long)big, (unsigned long)guard);
    fclose(f);
    *sys = (uintptr_t)0x4141414141410000ull;
    checkpoint();
    while (!strcmp(argv[1], "wait") && !go_on) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}
