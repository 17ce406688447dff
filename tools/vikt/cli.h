/* The vikt command-line tool as a function, so tests can run it in-process
 * (fork and exec hang under qemu-user): main.c is only a call to it. */
#ifndef VIKT_CLI_H
#define VIKT_CLI_H

#include "vikt.h"

#include <stdio.h>

/* Exit statuses, as diff(1) has them. */
enum {
    VIKT__CLI_OK = 0,      /* done; for diff: no differences */
    VIKT__CLI_DIFFER = 1,  /* diff found differences */
    VIKT__CLI_TROUBLE = 2  /* bad usage, or a file that cannot be read or is malformed */
};

/* Run `vikt argv[1] ...`: results go to out, messages and usage to err.
 * allocator is the one every allocation goes through (NULL: malloc). */
int vikt__cli_main(int argc, char **argv, FILE *out, FILE *err, const vikt_allocator *allocator);

#endif
