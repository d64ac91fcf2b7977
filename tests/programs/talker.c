/* Target for `multiheap --run`: the program's own stdio must be the user's.

   Prints a line on stdout and one on stderr, echoes the first line of its stdin,
   then stops in checkpoint() (the test's --break). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

int main(void)
{
    char line[128] = "";
    void *q = malloc(40);
    printf("talker stdout %p\n", q);
    fflush(stdout);
    fprintf(stderr, "talker stderr\n");
    if (!fgets(line, sizeof line, stdin))
        strcpy(line, "(eof)\n");
    printf("talker read %s", line);
    fflush(stdout);
    checkpoint();
    free(q);
    return 0;
}
