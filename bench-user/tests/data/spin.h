/* The spin of the no-frame-pointer C programs (spin_no_frame_pointers.c,
 * exec_child.c): spin_caller() calls spin_in_named_function(), which
 * spins; the tests look for main > spin_caller > spin_in_named_function. */
#include <stdint.h>
#include <time.h>

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
