/* corrupt.c MODE TRUTH: damage the heap one way (MODE), write the truth to the file
   TRUTH as JSON {"mode", "victim", "other"} (chunk addresses), then stop in
   checkpoint() before glibc notices anything.  "healthy" damages nothing. */
#define _GNU_SOURCE
#include <gnu/libc-version.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

#define HDR (2 * sizeof(size_t))
#define CH(p) ((uintptr_t)(p) - HDR)
#define SIZE(p) (((size_t *)(p))[-1])

static _Alignas(64) size_t target[64];  /* .bss: a place a bent link points at */
static int major, minor;
static void *keep[64];

static int ver(int a, int b) { return major > a || (major == a && minor >= b); }
static uintptr_t protect(void *pos, void *ptr)  /* safe-linking's PROTECT_PTR */
{
    return ver(2, 32) ? (((uintptr_t)pos >> 12) ^ (uintptr_t)ptr) : (uintptr_t)ptr;
}
static int fill(void) { return ver(2, 43) ? 16 : 7; }
/* allocate and free fill() chunks of SIZE: their tcache bin is full afterwards */
static void fill_tcache(size_t size)
{
    void *p[16];
    int n = fill();
    for (int i = 0; i < n; i++) p[i] = malloc(size);
    for (int i = 0; i < n; i++) free(p[i]);
}
static uintptr_t heap_start(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    uintptr_t lo = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "[heap]")) { sscanf(line, "%lx", &lo); break; }
    fclose(f);
    return lo;
}

int main(int argc, char **argv)
{
    if (argc < 3) return 2;
    const char *mode = argv[1];
    sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor);
    setvbuf(stdout, NULL, _IONBF, 0);
    uintptr_t victim = 0, other = 0;
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    uintptr_t tcs = heap_start() + HDR;  /* tcache_perthread_struct (x86_64 main heap) */
    for (int i = 0; i < 8; i++) keep[i] = malloc(0x18 + 0x10 * i);  /* some in-use chunks */
    if (!strcmp(mode, "healthy")) {
        for (int i = 8; i < 40; i++) keep[i] = malloc(0x20 * i);
        for (int i = 8; i < 40; i += 3) free(keep[i]);
        void *big = malloc(0x30000);
        (void)big;
    } else if (!strcmp(mode, "tcache_poison_out") || !strcmp(mode, "tcache_poison_misaligned")) {
        char *a = malloc(0x38), *b = malloc(0x38);
        free(a);
        free(b);
        char *to = (char *)&target[8] + (strstr(mode, "misaligned") ? 8 : 0);
        *(uintptr_t *)b = protect(b, to);
        victim = CH(b), other = (uintptr_t)to - HDR;
    } else if (!strcmp(mode, "tcache_double_free")) {
        char *a = malloc(0x38);
        keep[10] = malloc(0x18);
        free(a);
        ((volatile size_t *)a)[1] = 0;  /* wipe the key */
        free(a);
        victim = CH(a);
    } else if (!strcmp(mode, "fastbin_double_free")) {
        char *a = malloc(0x38), *b = malloc(0x38);
        keep[10] = malloc(0x18);
        fill_tcache(0x38);
        free(a);
        free(b);
        free(a);
        victim = CH(a), other = CH(b);
    } else if (!strcmp(mode, "house_of_spirit")) {
        target[1] = 0x40;           /* fake chunk at &target[0]: size 0x40 */
        target[8 + 1] = 0x1234;     /* the next "chunk"'s size: sane */
        void *volatile fake = &target[2];
        free(fake);
        victim = (uintptr_t)&target[0];
    } else if (!strcmp(mode, "overlapping")) {
        char *a = malloc(0x78), *b = malloc(0x78);
        keep[10] = malloc(0x18);
        free(b);
        SIZE(a) = (SIZE(a) & 7) | (0x80 + 0x80);  /* a now covers b */
        victim = CH(b), other = CH(a);
    } else if (!strcmp(mode, "nul_byte")) {
        char *a = malloc(0x18), *b = malloc(0x508);
        keep[10] = malloc(0x18);
        free(b);
        a[0x18] = 0;  /* off by one: NUL into b's size */
        victim = CH(b), other = CH(a);
    } else if (!strcmp(mode, "unsorted_bk")) {
        char *b = malloc(0x508);
        keep[10] = malloc(0x18);
        free(b);
        ((uintptr_t *)b)[1] = (uintptr_t)&target[0];
        victim = CH(b), other = (uintptr_t)&target[0];
    } else if (!strcmp(mode, "smallbin_bk")) {
        char *b = malloc(0x98);
        keep[10] = malloc(0x18);
        fill_tcache(0x98);
        free(b);
        keep[11] = malloc(0x600);  /* sorts b into its small bin */
        ((uintptr_t *)b)[1] = (uintptr_t)&target[0];
        victim = CH(b), other = (uintptr_t)&target[0];
    } else if (!strcmp(mode, "largebin_nextsize")) {
        char *b = malloc(0x428);
        keep[10] = malloc(0x18);
        free(b);
        keep[11] = malloc(0x600);  /* sorts b into its large bin */
        size_t local[4];
        ((uintptr_t *)b)[3] = (uintptr_t)&local[0];  /* bk_nextsize to the stack */
        victim = CH(b), other = (uintptr_t)&local[0];
    } else if (!strcmp(mode, "top_size")) {
        char *a = malloc(0x18);
        SIZE(a + 0x20) = (size_t)-1;  /* house of force */
        victim = CH(a) + 0x20;
    } else if (!strcmp(mode, "non_main_arena")) {
        char *a = malloc(0x18);
        keep[10] = malloc(0x18);
        SIZE(a) |= 4;
        victim = CH(a);
    } else if (!strcmp(mode, "tcache_count")) {
        char *a = malloc(0x38), *b = malloc(0x38);
        free(a);
        free(b);
        int idx = (0x40 - 0x20) / 0x10;
        /* the tcache struct: entries[idx] holds b's user pointer; the counts precede */
        uintptr_t *w = (uintptr_t *)tcs;
        while (w[idx] != (uintptr_t)b) w++;
        int nbins = ver(2, 42) ? 76 : 64;
        char *tc = (char *)w - nbins * (ver(2, 30) ? 2 : 1);
        if (ver(2, 30)) ((uint16_t *)tc)[idx] += ver(2, 42) ? -2 : 2;
        else ((uint8_t *)tc)[idx] += 2;
        victim = (uintptr_t)tc;
    } else if (!strcmp(mode, "prev_size")) {
        char *b = malloc(0x508), *c = malloc(0x508);
        keep[10] = malloc(0x18);
        free(b);
        ((size_t *)c)[-2] = 0x500;  /* c's prev_size no longer b's size */
        victim = CH(c), other = CH(b);
    } else if (!strcmp(mode, "mmapped_size")) {
        char *m = malloc(0x40000);
        SIZE(m) += 0x100000;
        victim = CH(m);
    } else if (!strcmp(mode, "fastbin_size")) {
        char *a = malloc(0x38);
        keep[10] = malloc(0x18);
        fill_tcache(0x38);
        free(a);
        SIZE(a) = 0x51;
        victim = CH(a);
    } else if (!strcmp(mode, "many_flags")) {
        /* IS_MMAPPED set on 2,500 in-use chunks of the main heap: one "flags" finding
           each (other: how many), more than ptcheck lists of one kind */
        enum { MANY = 2500 };
        static char *many[MANY];
        for (int i = 0; i < MANY; i++) many[i] = malloc(0x18);
        for (int i = 0; i < MANY; i++) SIZE(many[i]) |= 2;
        victim = CH(many[0]), other = MANY;
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    char line[256];
    int n = snprintf(line, sizeof line,
                     "{\"mode\": \"%s\", \"glibc\": \"%s\", \"victim\": %lu, \"other\": %lu}\n",
                     mode, gnu_get_libc_version(), (unsigned long)victim, (unsigned long)other);
    if (write(fd, line, n) != n) return 3;
    close(fd);
    checkpoint();
    return 0;
}
