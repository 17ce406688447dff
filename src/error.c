/* Status strings, the sticky error and shape formatting for messages. */
#include "vikt_internal.h"

#include <stdio.h>
#include <string.h>

#define VIKT__STR(x) #x
#define VIKT__XSTR(x) VIKT__STR(x)

const char *vikt_version(void) {
    return VIKT__XSTR(VIKT_VERSION_MAJOR) "." VIKT__XSTR(VIKT_VERSION_MINOR) "." VIKT__XSTR(
        VIKT_VERSION_PATCH);
}

const char *vikt_strerror(int status) {
    switch (status) {
#define VIKT__STATUS_CASE(name, value, text) \
    case value:                              \
        return text;
        VIKT_STATUS_TABLE(VIKT__STATUS_CASE)
#undef VIKT__STATUS_CASE
    }
    return "unknown status";
}

int vikt__fail(vikt_model *m, int err, const char *fmt, ...) {
    if (!m || m->errcode != VIKT_OK) return err;
    m->errcode = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->errmsg, sizeof m->errmsg, fmt, ap);
    va_end(ap);
    return err;
}

int vikt_model_errcode(const vikt_model *m) { return m ? m->errcode : VIKT_ERR_NULL; }

const char *vikt_model_errmsg(const vikt_model *m) {
    return m ? m->errmsg : "vikt_model_errmsg: model is NULL";
}

void vikt_model_clear_error(vikt_model *m) {
    if (!m) return;
    m->errcode = VIKT_OK;
    m->errmsg[0] = '\0';
}

const char *vikt__dims_str(int rank, const int64_t *shape, char *buf) {
    if (rank == 0) {
        strcpy(buf, "scalar");
        return buf;
    }
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < rank && len < VIKT__SHAPE_STR; i++)
        len += (size_t)snprintf(buf + len, VIKT__SHAPE_STR - len, "%s%lld", i ? "x" : "",
                                (long long)shape[i]);
    return buf;
}

const char *vikt__shape_str(const vikt_tensor *t, char *buf) {
    return vikt__dims_str(t->rank, t->shape, buf);
}
