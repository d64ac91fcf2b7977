/* Target for `multiheap --run 'PROG ARGS'`: prints each argument in brackets and the
   value of $MULTIHEAP_ECHO, then stops in checkpoint().  The arguments must arrive
   exactly as the user quoted them, with nothing run by a shell. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

int main(int argc, char **argv)
{
    void *q = malloc(24);
    for (int i = 1; i < argc; i++)
        printf("[%s]", argv[i]);
    const char *e = getenv("MULTIHEAP_ECHO");
    printf(" env=%s\n", e ? e : "(unset)");
    fflush(stdout);
    checkpoint();
    free(q);
    return 0;
}
