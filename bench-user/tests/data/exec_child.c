/* What a forked child of the fixture execs (`forks --exec-program`),
 * given MALLOCS SETTLE_MS SPIN_MS: it sleeps SETTLE_MS, makes MALLOCS
 * allocations of 3 MiB (each freed at once), then spins SPIN_MS in a
 * function two calls below main. Linked statically (its malloc is in
 * this file, not in libc) and built without frame pointers (only stacks
 * unwound from .eh_frame name both callers): tests/probes.rs. */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "spin.h"

/* Where the spin's result goes, so that the spin is not optimised away. */
volatile uint64_t sink;

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    long mallocs = atol(argv[1]);
    long settle_ms = atol(argv[2]);
    long spin_ms = atol(argv[3]);
    struct timespec ts = {settle_ms / 1000, (settle_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    for (long i = 0; i < mallocs; i++) {
        volatile char *p = malloc(3 << 20);
        if (!p)
            return 1;
        p[0] = 1;
        free((void *)p);
    }
    if (spin_ms > 0)
        sink = spin_caller((double)spin_ms / 1000.0);
    return 0;
}
