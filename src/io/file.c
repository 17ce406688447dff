/* Every file-system call of the library, and crash-safe replacement of a
 * file. POSIX (open/pread/write/fsync/rename); a Windows port would replace
 * this file alone (_commit, MoveFileExW with MOVEFILE_WRITE_THROUGH).
 *
 * Each call goes through one wrapper that counts it on the model, so a test
 * can make the Nth call fail (vikt__io_fault) and prove that no failure
 * point loses the previous file or leaves a temporary behind. */
#define _POSIX_C_SOURCE 200809L

#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ model state */

vikt__io_state *vikt__io_state_get(vikt_model *m) {
    if (!m->io) {
        m->io = vikt__alloc(m, sizeof *m->io);
        if (m->io) memset(m->io, 0, sizeof *m->io);
    }
    return m->io;
}

void vikt__io_release(vikt_model *m) {
    if (!m->io) return;
    vikt__free(m, m->io->report, m->io->report_cap);
    vikt__free(m, m->io, sizeof *m->io);
    m->io = NULL;
}

int64_t vikt__io_fault(vikt_model *m, int kind, int64_t at) {
    vikt__io_state *io = vikt__io_state_get(m);
    if (!io) return VIKT_ERR_NOMEM;
    int64_t counted = io->ops;
    io->ops = 0;
    io->fault_kind = kind;
    io->fault_at = kind == VIKT__FAULT_NONE ? 0 : at;
    return counted;
}

const char *vikt__clip_tail(const char *s, size_t max) {
    size_t len = strlen(s);
    if (len <= max) return s;
    const char *t = s + len - max;
    while ((*t & 0xC0) == 0x80) t++; /* start on a UTF-8 character */
    return t;
}

const char *vikt__clip_prefix(const char *s, size_t max) { return strlen(s) > max ? "..." : ""; }

#define PATH_CLIP 96

int vikt__io_fail(vikt_model *m, int err, const char *op, const char *path, const char *fmt,
                  ...) {
    char detail[VIKT__ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    char msg[VIKT__ERRMSG_MAX];
    /* Truncation is fine here; testing the result says so to the compiler. */
    if (snprintf(msg, sizeof msg, "%s: %s%s: %s", op, vikt__clip_prefix(path, PATH_CLIP),
                 vikt__clip_tail(path, PATH_CLIP), detail) < 0)
        msg[0] = '\0';
    /* Kept apart from the sticky error, which an earlier error may hold. */
    if (m->io) memcpy(m->io->last_error, msg, sizeof msg);
    return vikt__fail(m, err, "%s", msg);
}

/* errno as text without strerror's shared buffer (XSI strerror_r). */
static const char *errtext(int e, char *buf, size_t size) {
    if (strerror_r(e, buf, size) != 0) snprintf(buf, size, "error %d", e);
    return buf;
}

static int fail_errno(vikt_model *m, const char *op, const char *path, const char *what, int e) {
    char text[96];
    return vikt__io_fail(m, VIKT_ERR_IO, op, path, "%s: %s", what, errtext(e, text, sizeof text));
}

/* ------------------------------------------------------------ fault hook */

/* Count one operation; the fault to inject into it, or VIKT__FAULT_NONE. */
static int next_op(vikt_model *m) {
    vikt__io_state *io = m->io;
    if (!io) return VIKT__FAULT_NONE;
    io->ops++;
    return io->fault_at && io->ops == io->fault_at ? io->fault_kind : VIKT__FAULT_NONE;
}

/* A fault that is an error (not a short transfer): set errno, return 1. */
static int injected_error(int fault) {
    if (fault != VIKT__FAULT_EIO && fault != VIKT__FAULT_ENOSPC) return 0;
    errno = fault == VIKT__FAULT_ENOSPC ? ENOSPC : EIO;
    return 1;
}

static int os_open(vikt_model *m, const char *path, int flags, mode_t mode) {
    if (injected_error(next_op(m))) return -1;
    return open(path, flags, mode);
}

static ssize_t os_write(vikt_model *m, int fd, const void *buf, size_t n) {
    int fault = next_op(m);
    if (injected_error(fault)) return -1;
    if (fault == VIKT__FAULT_SHORT && n > 1) n /= 2;
    return write(fd, buf, n);
}

static ssize_t os_pread(vikt_model *m, int fd, void *buf, size_t n, off_t off) {
    int fault = next_op(m);
    if (injected_error(fault)) return -1;
    if (fault == VIKT__FAULT_SHORT && n > 1) n /= 2;
    return pread(fd, buf, n, off);
}

static int os_fsync(vikt_model *m, int fd) {
    if (injected_error(next_op(m))) return -1;
    int rc;
    do rc = fsync(fd);
    while (rc != 0 && errno == EINTR);
    return rc;
}

/* close() releases the descriptor even when it reports an error, so an
 * injected failure closes it too. */
static int os_close(vikt_model *m, int fd) {
    int fault = next_op(m);
    int rc = close(fd);
    if (injected_error(fault)) return -1;
    return rc;
}

static int os_rename(vikt_model *m, const char *from, const char *to) {
    if (injected_error(next_op(m))) return -1;
    return rename(from, to);
}

/* ------------------------------------------------------------- reading */

int vikt__file_open(vikt__file *f, vikt_model *m, const char *op, const char *path) {
    memset(f, 0, sizeof *f);
    f->m = m, f->op = op, f->path = path, f->fd = -1;
    int fd = os_open(m, path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return fail_errno(m, op, path, "cannot open", errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail_errno(m, op, path, "cannot stat", e);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return vikt__io_fail(m, VIKT_ERR_IO, op, path, "%s",
                             S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file");
    }
    f->fd = fd;
    f->size = (uint64_t)st.st_size;
    return VIKT_OK;
}

void vikt__file_memory(vikt__file *f, vikt_model *m, const char *op, const void *data,
                       size_t size) {
    memset(f, 0, sizeof *f);
    f->m = m, f->op = op, f->path = "<memory>", f->fd = -1;
    f->mem = data;
    f->size = size;
}

int vikt__file_read(vikt__file *f, uint64_t offset, void *buf, size_t n) {
    if (offset > f->size || n > f->size - offset)
        return vikt__io_fail(f->m, VIKT_ERR_IO, f->op, f->path,
                             "read of %zu bytes at %llu is past the end (%llu bytes)", n,
                             (unsigned long long)offset, (unsigned long long)f->size);
    if (f->mem) {
        if (n) memcpy(buf, f->mem + offset, n);
        return VIKT_OK;
    }
    unsigned char *p = buf;
    while (n > 0) {
        size_t want = n > (1u << 30) ? (1u << 30) : n; /* pread's count fits ssize_t */
        ssize_t got = os_pread(f->m, f->fd, p, want, (off_t)offset);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return fail_errno(f->m, f->op, f->path, "read failed", errno);
        if (got == 0)
            return vikt__io_fail(f->m, VIKT_ERR_IO, f->op, f->path,
                                 "the file ended at byte %llu while reading (changed meanwhile?)",
                                 (unsigned long long)offset);
        p += got, n -= (size_t)got, offset += (uint64_t)got;
    }
    return VIKT_OK;
}

void vikt__file_close(vikt__file *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
}

/* ------------------------------------------------------------- writing */

/* A name for the temporary that no other writer picks: pid, clock and
 * address mixed by splitmix64. Not the model's generator, so saving never
 * changes what training draws. */
static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15u;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

static void tmp_name(vikt__writer *w, int attempt) {
    struct timespec ts = {0, 0};
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t r = mix((uint64_t)getpid() ^ mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30)) ^
                     mix((uint64_t)(uintptr_t)w + (uint64_t)attempt));
    static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    char suffix[7];
    for (int i = 0; i < 6; i++, r /= 36) suffix[i] = digits[r % 36];
    suffix[6] = '\0';
    snprintf(w->tmp, w->tmp_size, "%s.tmp-%s", w->path, suffix);
}

/* New files get the old file's permission bits, so replacing a file does not
 * change who may read it (best effort: a failure here loses nothing). */
static void keep_mode(int fd, const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) (void)fchmod(fd, st.st_mode & 07777);
}

int vikt__writer_open(vikt__writer *w, vikt_model *m, const char *op, const char *path) {
    memset(w, 0, sizeof *w);
    w->m = m, w->op = op, w->path = path, w->fd = -1;
    if (!vikt__io_state_get(m)) return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory", op);
    w->tmp_size = strlen(path) + 16;
    w->tmp = vikt__alloc(m, w->tmp_size);
    if (!w->tmp) return vikt__fail(m, VIKT_ERR_NOMEM, "%s: out of memory", op);
    for (int attempt = 0; attempt < 64; attempt++) {
        tmp_name(w, attempt);
        w->fd = os_open(m, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (w->fd >= 0 || errno != EEXIST) break;
    }
    if (w->fd < 0) {
        int e = errno;
        vikt__free(m, w->tmp, w->tmp_size);
        w->tmp = NULL;
        return fail_errno(m, op, path, "cannot create the temporary file", e);
    }
    keep_mode(w->fd, path);
    return VIKT_OK;
}

int vikt__writer_write(vikt__writer *w, const void *buf, size_t n) {
    const unsigned char *p = buf;
    while (n > 0) {
        size_t want = n > (1u << 30) ? (1u << 30) : n;
        ssize_t put = os_write(w->m, w->fd, p, want);
        if (put < 0 && errno == EINTR) continue;
        if (put <= 0) {
            int e = put < 0 ? errno : ENOSPC; /* 0 bytes for a non-empty write: a full disk */
            vikt__writer_abort(w);
            return fail_errno(w->m, w->op, w->path, "write failed", e);
        }
        p += put, n -= (size_t)put;
    }
    return VIKT_OK;
}

void vikt__writer_abort(vikt__writer *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    if (w->tmp) {
        unlink(w->tmp);
        vikt__free(w->m, w->tmp, w->tmp_size);
        w->tmp = NULL;
    }
}

/* The directory holding path, into buf (which has room for path). */
static void dir_of(const char *path, char *buf) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(buf, ".");
        return;
    }
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    memcpy(buf, path, len);
    buf[len] = '\0';
}

/* The rename is durable only once the directory entry is: fsync the
 * directory. Some file systems cannot (EINVAL); there is nothing more to do
 * on those, so that alone is not an error. */
static int sync_dir(vikt__writer *w) {
    dir_of(w->path, w->tmp);
    int fd = os_open(w->m, w->tmp, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return errno;
    int e = os_fsync(w->m, fd) != 0 && errno != EINVAL ? errno : 0;
    if (os_close(w->m, fd) != 0 && !e) e = errno;
    return e;
}

int vikt__writer_commit(vikt__writer *w) {
    const char *step = "fsync failed";
    if (os_fsync(w->m, w->fd) == 0) {
        step = "close failed";
        int closed = os_close(w->m, w->fd);
        w->fd = -1;
        if (closed == 0) {
            step = "rename failed";
            if (os_rename(w->m, w->tmp, w->path) == 0) {
                int e = sync_dir(w);
                vikt__free(w->m, w->tmp, w->tmp_size);
                w->tmp = NULL;
                if (e) return fail_errno(w->m, w->op, w->path,
                                         "replaced, but syncing its directory failed", e);
                return VIKT_OK;
            }
        }
    }
    int e = errno;
    vikt__writer_abort(w);
    return fail_errno(w->m, w->op, w->path, step, e);
}
