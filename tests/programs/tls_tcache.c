/* A program with thread-local variables of its own, and chunks in its tcache.

   usage: tls_tcache MODE TRUTH_FILE   (MODE: "stop" or "wait")
   The executable's own __thread block comes first in the thread's TLS (module 1),
   before libc's, as in perl; it is smaller than libc's and holds zeros where libc's
   tcache pointer would be, so a tool that takes the wrong block reads NULL there.  Writes pid and the user pointers it freed into the tcache to
   TRUTH_FILE (one JSON object), then stops in checkpoint(); "wait" then sleeps in a
   loop so that a test can attach or gcore it. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__thread long own_tls[16] = {7}; /* module 1's TLS block: 128 bytes below the pointer */
volatile int go_on;

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE TRUTH_FILE\n", argv[0]);
        return 2;
    }
    void *p[6];
    for (int i = 0; i < 6; i++)
        p[i] = malloc(24 + 32 * i);
    void *hold = malloc(24); /* keeps the freed chunks off the top */
    for (int i = 0; i < 6; i++)
        free(p[i]);
    own_tls[0] += (long)hold & 1;
    FILE *f = fopen(argv[2], "w");
    if (!f)
        return 3;
    fprintf(f, "{\"pid\": %d, \"own_tls\": %ld, \"tcache\": [", (int)getpid(), own_tls[0]);
    for (int i = 0; i < 6; i++)
        fprintf(f, "%s%lu", i ? ", " : "", (unsigned long)p[i]);
    fprintf(f, "]}\n");
    fclose(f);
    checkpoint();
    while (!strcmp(argv[1], "wait") && !go_on) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}
