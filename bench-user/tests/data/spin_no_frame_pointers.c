/* Spins in a named function two calls below main, built without frame
 * pointers (-fomit-frame-pointer): only stacks unwound from .eh_frame
 * name all three (tests/probes.rs).
 *
 * Writes "ready", waits for a byte on stdin, spins for argv[1] seconds,
 * writes "done", then waits for stdin to close. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((noinline)) static uint64_t spin_in_named_function(double seconds)
{
    double end = now() + seconds;
    uint64_t x = 88172645463325252ull;
    for (;;) {
        /* Check the clock seldom: the samples belong in this loop, not in
         * the vDSO. */
        for (int i = 0; i < 1 << 20; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        if (now() >= end)
            return x;
    }
}

__attribute__((noinline)) static uint64_t spin_caller(double seconds)
{
    /* Not a tail call: the result is used. */
    return spin_in_named_function(seconds) | 1;
}

/* Where the spin's result goes, so that the spin is not optimised away. */
volatile uint64_t sink;

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    char c;
    printf("ready\n");
    fflush(stdout);
    if (read(0, &c, 1) != 1)
        return 1;
    sink = spin_caller(seconds);
    printf("done\n");
    fflush(stdout);
    while (read(0, &c, 1) == 1) {
    }
    return 0;
}
