/* Opening the files of the dataset loaders: only regular files, whose size
 * is known before anything is read (a directory or a pipe would report a
 * size that means nothing). */
#define _POSIX_C_SOURCE 200809L

#include "../vikt_internal.h"
#include "io.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int vikt__data_open(vikt_model *m, const char *opname, const char *path, FILE **f,
                    uint64_t *size) {
    *f = fopen(path, "rb");
    if (!*f) return vikt__io_fail(m, VIKT_ERR_IO, opname, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fileno(*f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(*f);
        *f = NULL;
        return vikt__io_fail(m, VIKT_ERR_IO, opname, path, "not a regular file");
    }
    *size = (uint64_t)st.st_size;
    return VIKT_OK;
}
