/* A program that only mallocs and frees: for libcs other than glibc (musl). */
#include <stdlib.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

int main(void)
{
    void *p[10];
    for (int i = 0; i < 10; i++)
        p[i] = malloc(32 + (size_t)i);
    free(p[3]);
    checkpoint();
    return 0;
}
