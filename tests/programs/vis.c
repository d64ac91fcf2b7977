/* A heap holding every kind of list, and user data that points at named things.

   usage: vis TRUTH_FILE [wait]
   tcache bin 1 holds seven 0x30 chunks, fastbin 1 two more; tcache bin 7 holds seven
   0x90 chunks, smallbin 9 an eighth; largebin holds a 0x510 chunk, the unsorted bin a
   0x530 one.  keep[0] is a chunk in use whose words point at _IO_2_1_stdout_, at
   target+16 (a global), at the stack and at the heap; keep[1] is a calloc'ed chunk of
   zeros.  Writes every address (JSON, decimal) to TRUTH_FILE, then stops in
   checkpoint(); "wait" then sleeps so a test can attach or gcore it. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

char target[64] = "multiheap target";
void *keep[8];
volatile int go_on;

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

static void list(FILE *f, const char *name, void **p, int n, int last)
{
    fprintf(f, "\"%s\": [", name);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%lu", i ? ", " : "", (unsigned long)p[i]);
    fprintf(f, "]%s\n", last ? "" : ",");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s TRUTH_FILE [wait]\n", argv[0]);
        return 2;
    }
    long on_stack = 42;
    static char buf[4096];
    FILE *f = fopen(argv[1], "w"); /* first: no malloc after the heap is shaped */
    if (!f)
        return 3;
    setvbuf(f, buf, _IOFBF, sizeof buf);
    void *t[9], *s[8];
    keep[0] = malloc(0x48);
    for (int i = 0; i < 9; i++)
        t[i] = malloc(0x28);
    for (int i = 0; i < 8; i++)
        s[i] = malloc(0x88);
    keep[4] = malloc(0x18); /* guards: no free chunk touches another or the top */
    void *large = malloc(0x508);
    keep[5] = malloc(0x18);
    void *unsorted = malloc(0x528);
    keep[2] = malloc(0x18);
    keep[1] = calloc(1, 0x100);

    void **w = keep[0];
    w[0] = stdout;
    w[1] = target + 16;
    w[2] = &on_stack;
    w[3] = keep[1];
    strcpy((char *)&w[4], "ptvis was here");

    for (int i = 0; i < 7; i++)
        free(t[i]); /* tcache bin 1 */
    for (int i = 0; i < 8; i++)
        free(s[i]); /* 7 in tcache bin 7, the eighth in unsorted */
    unsigned long large_at = (unsigned long)large, unsorted_at = (unsigned long)unsorted;
    free(large);
    keep[3] = malloc(0x600); /* sorts unsorted: 0x90 to smallbin 9, 0x510 to a largebin */
    free(t[7]);              /* fastbin 1 (after the large request, which consolidates) */
    free(t[8]);
    free(unsorted); /* stays in unsorted */

    fprintf(f, "{\"pid\": %d, \"stdout\": %lu, \"target\": %lu, \"stack\": %lu,\n", (int)getpid(),
            (unsigned long)stdout, (unsigned long)target, (unsigned long)&on_stack);
    fprintf(f, "\"large\": %lu, \"unsorted\": %lu,\n", large_at, unsorted_at);
    list(f, "keep", keep, 4, 0);
    list(f, "tcache30", t, 7, 0);
    list(f, "fast30", t + 7, 2, 0);
    list(f, "tcache90", s, 7, 0);
    list(f, "small90", s + 7, 1, 1);
    fprintf(f, "}\n");
    fflush(f); /* (no fclose: its free would add a chunk) */
    checkpoint();
    while (argc > 2 && !strcmp(argv[2], "wait") && !go_on) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return on_stack == 43;
}
