/* No headers: compiled with -c for machines that have no libc here (big-endian ones),
 * so that tests/test_elf_relocations.py reads REL and RELA entries in both byte orders.
 * Data pointers, calls and an initial-exec TLS variable give several relocation types. */
extern int shared_counter;
extern void elsewhere(int);
extern __thread int tls_counter __attribute__((tls_model("initial-exec")));

int *pointers[3] = {&shared_counter, 0, &shared_counter};
static const char text[] = "relocations";
const char *names[] = {text, text + 4};

int touch(int n) {
    elsewhere(n);
    tls_counter += n;
    return *pointers[0] + names[1][0];
}
