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

#include "spin.h"

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
