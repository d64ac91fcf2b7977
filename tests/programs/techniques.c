/* techniques.c MODE: the heap states of well-known heap exploitation techniques (the
   ones how2heap demonstrates), written here from what each technique does to the heap.
   Each mode shapes the heap as the technique does, calls before() just ahead of its
   corrupting write (the heap is still one glibc made), does the write, and calls
   checkpoint() (the damage is in place, glibc has not yet looked).  Nothing after the
   stop runs: the program exits when continued. */
#define _GNU_SOURCE
#include <gnu/libc-version.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void before(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

#define HDR (2 * sizeof(size_t))
static int major, minor;
static volatile uintptr_t sink;

static int ver(int a, int b) { return major > a || (major == a && minor >= b); }
static uintptr_t protect(void *pos, void *ptr)  /* safe-linking (2.32+) */
{
    return ver(2, 32) ? (((uintptr_t)pos >> 12) ^ (uintptr_t)ptr) : (uintptr_t)ptr;
}
static void fill_tcache(size_t request)  /* 7 freed chunks: that tcache bin is full */
{
    void *p[7];
    for (int i = 0; i < 7; i++) p[i] = malloc(request);
    for (int i = 0; i < 7; i++) free(p[i]);
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    const char *m = argv[1];
    sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor);
    _Alignas(16) size_t fake[16] = {0};  /* stack memory shaped like chunks */
    size_t *stack_target = &fake[12];
    if (!strcmp(m, "fastbin_dup")) {  /* the same chunk freed twice into a fastbin */
        void *a = malloc(0x18), *b = malloc(0x18);
        fill_tcache(0x18);  /* after a and b: they go to the fastbin */
        free(a);
        free(b);  /* the fastbin's head is b: glibc's top-only check lets a in again */
        before();
        free(a);
    } else if (!strcmp(m, "tcache_poisoning")) {  /* a freed chunk's next -> the stack */
        size_t *a = malloc(0x80), *b = malloc(0x80);
        free(a);
        free(b);
        before();
        b[0] = protect(b, stack_target);
    } else if (!strcmp(m, "house_of_spirit")) {  /* a fake stack chunk freed: fastbin */
        fill_tcache(0x30);
        fake[1] = 0x40;
        fake[9] = 0x1234;  /* the next "chunk"'s size: plausible for free's check */
        before();
        free(&fake[2]);
    } else if (!strcmp(m, "tcache_house_of_spirit")) {  /* the same into the tcache */
        sink = (uintptr_t)malloc(1);
        fake[1] = 0x40;
        before();
        free(&fake[2]);
    } else if (!strcmp(m, "poison_null_byte")) {  /* a NUL past b clears c's PREV_INUSE */
        uint8_t *a = malloc(0x38), *b = malloc(0x28), *c = malloc(0xf8);
        sink = (uintptr_t)a + (uintptr_t)c;
        memset(b, 'b', 0x28);
        before();
        b[0x28] = 0;  /* c's size 0x101 -> 0x100: b looks free, in no list */
    } else if (!strcmp(m, "unsafe_unlink")) {  /* a fake free chunk whose fd/bk pass */
        static size_t *ptr;
        ptr = malloc(0x420);
        size_t *c1 = malloc(0x420);
        ptr[1] = 0x420;
        ptr[2] = (size_t)(&ptr - 3);
        ptr[3] = (size_t)(&ptr - 2);
        before();
        c1[-2] = 0x420;  /* prev_size of c1: the fake chunk */
        c1[-1] &= ~(size_t)1;  /* the chunk before c1 is "free" */
    } else if (!strcmp(m, "house_of_einherjar")) {  /* a NUL and a prev_size reaching back */
        size_t *a = malloc(0x38);
        uint8_t *b = malloc(0x28), *c = malloc(0xf8);
        sink = (uintptr_t)c;
        a[1] = 0x60;
        a[2] = a[3] = (size_t)a;
        before();
        b[0x28] = 0;
        ((size_t *)b)[4] = (size_t)(c - HDR) - (size_t)a;  /* c's prev_size */
    } else if (!strcmp(m, "large_bin_attack")) {  /* a large-bin chunk's bk_nextsize bent */
        size_t *p1 = malloc(0x428);
        sink = (uintptr_t)malloc(0x18);
        size_t *p2 = malloc(0x418);
        sink = (uintptr_t)malloc(0x18);
        free(p1);
        sink = (uintptr_t)malloc(0x438);  /* p1 sorted into its large bin */
        free(p2);  /* p2 in the unsorted bin */
        before();
        p1[3] = (size_t)(stack_target - 4);
    } else if (!strcmp(m, "house_of_lore")) {  /* a small-bin chunk's bk -> the stack */
        size_t *victim = malloc(0x100);
        void *d[7];
        for (int i = 0; i < 7; i++) d[i] = malloc(0x100);
        sink = (uintptr_t)malloc(1000);
        for (int i = 0; i < 7; i++) free(d[i]);
        free(victim);  /* unsorted */
        sink = (uintptr_t)malloc(1200);  /* victim sorted into its small bin */
        fake[2] = (size_t)(victim - 2);
        before();
        victim[1] = (size_t)fake;
    } else if (!strcmp(m, "house_of_botcake")) {  /* a chunk in tcache inside a free one */
        void *x[7];
        for (int i = 0; i < 7; i++) x[i] = malloc(0x100);
        void *prev = malloc(0x100), *a = malloc(0x100);
        sink = (uintptr_t)malloc(0x10);
        for (int i = 0; i < 7; i++) free(x[i]);
        free(a);  /* unsorted */
        free(prev);  /* merges with a */
        sink = (uintptr_t)malloc(0x100);  /* room in the tcache bin */
        before();
        free(a);  /* again: into the tcache, inside the merged free chunk */
    } else if (!strcmp(m, "tcache_metadata_poisoning")) {  /* the tcache struct written */
        size_t *victim = malloc(0x10);
        uint8_t *tcs = (uint8_t *)victim - HDR - (ver(2, 30) ? 0x290 : 0x250) + HDR;
        uint16_t *counts16 = (uint16_t *)tcs;
        uint8_t *counts8 = tcs;
        void **entries = (void **)(tcs + (ver(2, 30) ? 2 * 64 : 64));
        before();
        if (ver(2, 30)) counts16[1] = 1; else counts8[1] = 1;
        entries[1] = stack_target;
    } else if (!strcmp(m, "house_of_water")) {  /* a fake chunk freed into the tcache from
                                                   inside an in-use chunk */
        sink = (uintptr_t)malloc(0x88);
        size_t *guard = malloc(0x18);
        uint8_t *s = malloc(0x88);
        sink = (uintptr_t)guard;
        *(size_t *)(s - 0x18) = 0x331;  /* inside guard's data: harmless so far */
        before();
        free(s - 0x10);  /* the fake 0x330 chunk at s-0x20 goes into its tcache bin */
    } else if (!strcmp(m, "overlapping_chunks")) {  /* a freed chunk's size enlarged */
        void *p1 = malloc(0x78), *p2 = malloc(0x4f8), *p3 = malloc(0x78);
        sink = (uintptr_t)p1 + (uintptr_t)p3;
        sink = (uintptr_t)malloc(0x18);  /* keeps p3 off top */
        free(p2);  /* unsorted */
        before();
        ((size_t *)p2)[-1] = 0x581;  /* now it spans p3: the next prev_size disagrees */
    } else if (!strcmp(m, "unsorted_bin_attack")) {  /* an unsorted chunk's bk bent */
        size_t *p = malloc(0x418);
        sink = (uintptr_t)malloc(0x18);
        free(p);
        before();
        p[1] = (size_t)(stack_target - 2);
    } else {
        return 2;
    }
    checkpoint();
    return 0;
}
