/* Heap bugs for the triage tests, one per mode, each in its own function so that
 * each bug has its own crash site:
 *
 *   triage_bugs MODE [SEED]
 *
 *   healthy        allocations and frees, then stops itself (SIGSTOP) for gcore
 *   overflow       writes past a chunk into the next chunk's size field, then stops
 *   overflow-crash the same overflow, then frees the damaged chunk: glibc aborts
 *   double-free    frees one pointer twice: glibc aborts
 *   segv           writes through a wild pointer: SIGSEGV at 0x10
 *
 * SEED changes the number and sizes of the other allocations, so two cores of one bug
 * are not the same bytes.  Before stopping or crashing it prints "ready PID" on stdout.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *keep[64];
volatile size_t over = 8 + 8;   /* bytes written past the 40 asked for */
void *volatile wild = (void *)0x10;

static void ready(void)
{
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
}

static void noise(int seed)
{
    for (int i = 0; i < 16 + seed % 16; i++)
        keep[i] = malloc(24 + (size_t)((i * 40 + seed * 8) % 600));
    for (int i = 1; i < 16; i += 3) {
        free(keep[i]);
        keep[i] = NULL;
    }
}

__attribute__((noinline)) void stop_here(void)
{
    ready();
    raise(SIGSTOP);
}

__attribute__((noinline)) void do_healthy(void)
{
    void *a = malloc(100), *b = malloc(2000);
    free(a);
    keep[60] = b;
    stop_here();
}

__attribute__((noinline)) char *overflow_into_next(void)
{
    char *a = malloc(40);            /* a 0x30 chunk */
    char *b = malloc(40);
    keep[61] = a;
    keep[62] = b;
    memset(a, 'A', 40 + over);       /* past a: over b's prev_size and size */
    __asm__ volatile("" ::: "memory");
    return b;
}

__attribute__((noinline)) void do_overflow(void)
{
    overflow_into_next();
    stop_here();
}

__attribute__((noinline)) void do_overflow_crash(void)
{
    char *b = overflow_into_next();
    ready();
    free(b);                         /* free(): invalid size (or invalid pointer) */
}

__attribute__((noinline)) void do_double_free(void)
{
    void *volatile p = malloc(56);
    free(p);
    ready();
    free(p);                         /* free(): double free detected in tcache 2 */
}

__attribute__((noinline)) void do_segv(void)
{
    ready();
    *(volatile int *)wild = 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s healthy|overflow|overflow-crash|double-free|segv [SEED]\n",
                argv[0]);
        return 2;
    }
    noise(argc > 2 ? atoi(argv[2]) : 0);
    const char *m = argv[1];
    if (!strcmp(m, "healthy"))
        do_healthy();
    else if (!strcmp(m, "overflow"))
        do_overflow();
    else if (!strcmp(m, "overflow-crash"))
        do_overflow_crash();
    else if (!strcmp(m, "double-free"))
        do_double_free();
    else if (!strcmp(m, "segv"))
        do_segv();
    else {
        fprintf(stderr, "unknown mode %s\n", m);
        return 2;
    }
    return 0;
}
