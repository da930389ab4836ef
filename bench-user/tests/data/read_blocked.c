/* Blocks in glibc's read() from a function of its own: the off-CPU
 * probe's stacks must name wait_for_byte, the caller of read(), in every
 * sample (tests/probes.rs). Built with frame pointers; glibc's read() sets
 * up no frame of its own, so a frame-pointer walk from inside it skips
 * straight from read to serve.
 *
 * Writes "r" when ready, then reads a byte at a time from stdin and
 * answers each with "k", until stdin closes or sends 'q'. */
#include <unistd.h>

__attribute__((noinline)) static int wait_for_byte(void)
{
    char c;
    ssize_t n = read(0, &c, 1);
    /* Uses the result, so that read() is a call, not a tail jump. */
    return n == 1 ? (unsigned char)c : -1;
}

__attribute__((noinline)) static void serve(void)
{
    for (;;) {
        int c = wait_for_byte();
        if (c < 0 || c == 'q')
            return;
        if (write(1, "k", 1) != 1)
            return;
    }
}

int main(void)
{
    if (write(1, "r", 1) != 1)
        return 1;
    serve();
    return 0;
}
