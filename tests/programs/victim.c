/* Target for the read-only tests: globals an argument could try to change.

   usage: victim READY_FILE
   Shapes a small heap (tcache, a bin, an mmapped chunk), writes its pid and the
   addresses it holds to READY_FILE, then stops in checkpoint() (a debugger's
   breakpoint) or, without a debugger, sleeps in a loop so that a test can attach.
   After checkpoint() returns it prints the globals: a debugger that wrote to them
   would show there too. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int nkeep = 5;
void *keep[8];
char *global_ptr;
long *p;
void *guard;
volatile int go_on;

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s READY_FILE\n", argv[0]);
        return 2;
    }
    for (int i = 0; i < 8; i++)
        keep[i] = malloc(24 + 16 * i);
    global_ptr = malloc(0x500);
    p = malloc(64);
    *p = 0x1111;
    keep[7] = realloc(keep[7], 300000); /* mmapped */
    free(keep[0]);
    free(keep[1]);
    char *big = malloc(0x600);
    guard = malloc(24);
    free(big); /* unsorted */
    FILE *f = fopen(argv[1], "w");
    if (!f)
        return 3;
    fprintf(f, "{\"pid\": %d, \"p\": %lu, \"global_ptr\": %lu}\n", (int)getpid(),
            (unsigned long)p, (unsigned long)global_ptr);
    fclose(f);
    checkpoint();
    while (argc > 2 && !go_on) { /* "victim FILE wait": a target to attach to */
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    printf("nkeep=%d keep3=%p p0=%#lx\n", nkeep, keep[3], *p);
    return 0;
}
