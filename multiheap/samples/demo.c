/* multiheap's demo target: a small program whose heap has something in every list.
 *
 * Two threads (two arenas, two tcaches), chunks in tcache, fastbins, the unsorted,
 * small and large bins, and one mmapped chunk.  It stops in checkpoint() where a
 * debugger looks at it.  demo_ptrs[] holds what it allocated.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *demo_ptrs[64];
void *volatile demo_guard;   /* keeps guard allocations "used" */
static pthread_barrier_t barrier;

__attribute__((noinline)) void checkpoint(void) { __asm__ volatile("" ::: "memory"); }

static void *worker(void *arg) {
    void *mine[12];
    (void)arg;
    for (int i = 0; i < 12; i++) mine[i] = malloc(0x48);
    for (int i = 0; i < 12; i += 2) free(mine[i]);   /* this thread's tcache */
    pthread_barrier_wait(&barrier);                 /* main looks at the heap now */
    pthread_barrier_wait(&barrier);
    return NULL;
}

int main(void) {
    pthread_t t;
    pthread_barrier_init(&barrier, NULL, 2);
    pthread_create(&t, NULL, worker, NULL);
    for (int i = 0; i < 40; i++) {             /* sizes 0x20 .. 0x520, guards between */
        demo_ptrs[i] = malloc(0x18 + (i % 10) * 0x80);
        strcpy(demo_ptrs[i], "multiheap demo");
        demo_guard = malloc(0x18);
    }
    demo_ptrs[40] = malloc(512 * 1024);        /* mmapped */
    for (int i = 0; i < 40; i += 2) free(demo_ptrs[i]);   /* tcache first, then bins */
    for (int i = 41; i < 52; i++) demo_ptrs[i] = malloc(0x28);
    demo_guard = malloc(0x600);                /* sorts the unsorted bin into bins */
    for (int i = 41; i < 52; i++) free(demo_ptrs[i]);     /* 7 to tcache, 4 fastbins */
    free(demo_ptrs[1]);                        /* into the unsorted bin */
    pthread_barrier_wait(&barrier);
    checkpoint();
    pthread_barrier_wait(&barrier);
    pthread_join(t, NULL);
    return 0;
}
