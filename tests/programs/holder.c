/* Attach target for multiheap's CLI tests: shapes a heap, reports, then keeps running.

   usage: holder TRUTH_FILE
   Writes {"pid", "glibc", "mallinfo2"} to TRUTH_FILE, then sleeps in a loop (asking
   gnu_get_libc_version links glibc's version banner into a static build too).  On SIGUSR1 it
   writes the same report again to TRUTH_FILE.again, so a test can check that it still
   runs after a debugger detached and that its heap is what it was.  Reports are
   formatted into static buffers and written with write(2): no allocation. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t again;
static char buf[4096], path[4096];
static void *keep[256];

static void on_usr1(int sig) { (void)sig; again = 1; }

static void report(const char *file)
{
    struct mallinfo2 m = mallinfo2();
    int n = snprintf(buf, sizeof buf,
                     "{\"pid\": %d, \"glibc\": \"%s\", \"mallinfo2\": {\"arena\": %zu, \"ordblks\": %zu, "
                     "\"smblks\": %zu, \"hblks\": %zu, \"hblkhd\": %zu, \"uordblks\": %zu, "
                     "\"fordblks\": %zu, \"fsmblks\": %zu, \"keepcost\": %zu}}\n",
                     (int)getpid(), gnu_get_libc_version(), m.arena, m.ordblks, m.smblks, m.hblks, m.hblkhd,
                     m.uordblks, m.fordblks, m.fsmblks, m.keepcost);
    snprintf(path, sizeof path, "%s.tmp", file);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, n) != n)
        _exit(3);
    close(fd);
    rename(path, file); /* appears whole */
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s TRUTH_FILE\n", argv[0]);
        return 2;
    }
    static char again_file[4096];
    snprintf(again_file, sizeof again_file, "%s.again", argv[1]);
    signal(SIGUSR1, on_usr1);
    for (int i = 0; i < 256; i++)
        keep[i] = malloc(16 + (i % 9) * 40);
    keep[255] = malloc(300000); /* mmapped */
    for (int i = 0; i < 250; i += 3) {
        free(keep[i]);
        keep[i] = NULL;
    }
    report(argv[1]);
    for (;;) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (again) {
            again = 0;
            report(again_file);
        }
    }
}
