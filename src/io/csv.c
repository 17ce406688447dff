/* The numeric CSV loader (format and errors documented in vikt.h under
 * "CSV files"). The file is read whole, then walked twice: once to count
 * the data lines and the fields of the first, once to convert and check
 * every field. The first problem stops the load with FILE:LINE:COLUMN. */
#include "../vikt_internal.h"

#include <float.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char OP[] = "vikt_dataset_load_csv";

/* The longest field text converted; longer ones are refused, not cut. */
#define FIELD_MAX 127

typedef struct csv_reader {
    vikt_model *m;
    const char *path;
    const char *text; /* the whole file, NUL-terminated */
    size_t len;
    int delimiter;
} csv_reader;

/* One line without its LF or CRLF. */
typedef struct csv_line {
    const char *begin, *end;
    int64_t number; /* 1-based */
} csv_line;

static int csv_error(const csv_reader *r, const csv_line *line, const char *at, const char *fmt,
                     ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Record "OP: FILE:LINE:COLUMN: problem", the column being at's. */
static int csv_error(const csv_reader *r, const csv_line *line, const char *at, const char *fmt,
                     ...) {
    char problem[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    return vikt__fail(r->m, VIKT_ERR_FORMAT, "%s: %s:%lld:%lld: %s", OP, r->path,
                      (long long)line->number, (long long)(at - line->begin) + 1, problem);
}

/* --------------------------------------------------------------- reading */

static int read_whole_file(vikt_model *m, const char *path, char **text, size_t *len) {
    FILE *f;
    uint64_t fsize;
    int err = vikt__data_open(m, OP, path, &f, &fsize);
    if (err) return err;
    if (fsize >= SIZE_MAX) {
        fclose(f);
        return vikt__fail(m, VIKT_ERR_NOMEM, "%s: %s: too large to read", OP, path);
    }
    size_t size = (size_t)fsize;
    char *buf = vikt__alloc(m, size + 1);
    if (!buf) {
        fclose(f);
        return vikt__fail(m, VIKT_ERR_NOMEM, "%s: %s: out of memory for %zu bytes", OP, path, size);
    }
    size_t got = fread(buf, 1, size, f);
    int failed = ferror(f);
    fclose(f);
    if (failed || got != size) {
        vikt__free(m, buf, size + 1);
        return vikt__fail(m, VIKT_ERR_IO, "%s: %s: read %zu of %zu bytes", OP, path, got, size);
    }
    buf[size] = '\0';
    *text = buf;
    *len = size;
    return VIKT_OK;
}

/* The line starting at *pos; advances *pos past its end. 0 at the end. */
static int next_line(const csv_reader *r, size_t *pos, csv_line *line) {
    if (*pos == 0 && r->len >= 3 && memcmp(r->text, "\xEF\xBB\xBF", 3) == 0)
        *pos = 3; /* a UTF-8 byte-order mark, as spreadsheets write */
    if (*pos >= r->len) return 0;
    const char *begin = r->text + *pos;
    const char *nl = memchr(begin, '\n', r->len - *pos);
    const char *end = nl ? nl : r->text + r->len;
    *pos = (size_t)(end - r->text) + (nl ? 1 : 0);
    if (end > begin && end[-1] == '\r') end--;
    line->begin = begin;
    line->end = end;
    line->number++;
    return 1;
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

static int blank_line(const csv_line *line) {
    for (const char *p = line->begin; p < line->end; p++)
        if (!is_blank(*p)) return 0;
    return 1;
}

static int64_t count_fields(const csv_reader *r, const csv_line *line) {
    int64_t n = 1;
    for (const char *p = line->begin; p < line->end; p++) n += *p == (char)r->delimiter;
    return n;
}

/* ---------------------------------------------------------------- fields */

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Whether [p, e) is exactly: sign? (digits (. digits?)? | . digits) exponent? */
static int decimal_syntax(const char *p, const char *e) {
    if (p < e && (*p == '+' || *p == '-')) p++;
    int digits = 0;
    while (p < e && is_digit(*p)) p++, digits++;
    if (p < e && *p == '.') {
        p++;
        while (p < e && is_digit(*p)) p++, digits++;
    }
    if (!digits) return 0;
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p == e || !is_digit(*p)) return 0;
        while (p < e && is_digit(*p)) p++;
    }
    return p == e;
}

/* The value of a field that passed decimal_syntax. strtod() reads the
 * decimal point of the program's LC_NUMERIC locale (',' in de_DE), and a
 * file's is always '.': spell it the locale's way first, or "1.5" would
 * read as 1 under such a locale. */
static double decimal_value(const char *text) {
    const char *point = localeconv()->decimal_point;
    size_t point_len = strlen(point);
    if (strcmp(point, ".") == 0 || point_len == 0 || point_len > 8) return strtod(text, NULL);
    char spelled[FIELD_MAX + 9]; /* at most one '.' becomes point_len bytes */
    size_t k = 0;
    for (const char *c = text; *c; c++) {
        if (*c == '.') {
            memcpy(spelled + k, point, point_len);
            k += point_len;
        } else {
            spelled[k++] = *c;
        }
    }
    spelled[k] = '\0';
    return strtod(spelled, NULL);
}

/* Convert the field [begin, end) to a finite float; errors name the field. */
static int parse_field(const csv_reader *r, const csv_line *line, const char *begin,
                       const char *end, double *value) {
    const char *p = begin, *e = end;
    while (p < e && is_blank(*p)) p++;
    while (e > p && is_blank(e[-1])) e--;
    if (p == e) return csv_error(r, line, begin, "empty field");
    char text[FIELD_MAX + 1];
    size_t n = (size_t)(e - p);
    if (n > FIELD_MAX) return csv_error(r, line, begin, "field longer than %d bytes", FIELD_MAX);
    memcpy(text, p, n);
    text[n] = '\0';
    if (!decimal_syntax(p, e)) return csv_error(r, line, begin, "not a number: \"%s\"", text);
    double v = decimal_value(text);
    if (!(v <= FLT_MAX && v >= -FLT_MAX))
        return csv_error(r, line, begin, "%s is out of float32's range", text);
    *value = v;
    return VIKT_OK;
}

static int check_label(const csv_reader *r, const csv_line *line, const char *begin, double v,
                       int64_t classes) {
    if (v < 0 || v > 2147483646.0 || v != (double)(int64_t)v)
        return csv_error(r, line, begin, "label %.17g is not a whole number from 0 to 2147483646",
                         v);
    if (classes > 0 && (int64_t)v >= classes)
        return csv_error(r, line, begin, "label %lld is not below classes = %lld", (long long)v,
                         (long long)classes);
    return VIKT_OK;
}

/* Convert one data line of `fields` fields into a sample and its label. */
static int parse_line(const csv_reader *r, const csv_line *line, int64_t fields,
                      int64_t label_col, int64_t classes, float *x, int32_t *label) {
    const char *p = line->begin;
    for (int64_t f = 0; f < fields; f++) {
        if (f > 0) {
            if (p == line->end)
                return csv_error(r, line, p, "too few fields: expected %lld, found %lld",
                                 (long long)fields, (long long)f);
            p++; /* the delimiter */
        }
        const char *end = memchr(p, r->delimiter, (size_t)(line->end - p));
        if (!end) end = line->end;
        double v = 0;
        int err = parse_field(r, line, p, end, &v);
        if (err) return err;
        if (f == label_col) {
            if ((err = check_label(r, line, p, v, classes))) return err;
            *label = (int32_t)v;
        } else {
            *x++ = (float)v;
        }
        p = end;
    }
    if (p != line->end)
        return csv_error(r, line, p + 1, "too many fields: expected %lld", (long long)fields);
    return VIKT_OK;
}

/* ------------------------------------------------------------------ load */

static int bad_delimiter(int d) {
    return d <= 0 || d > 255 || d == '\n' || d == '\r' || d == '+' || d == '-' || d == '.' ||
           d == 'e' || d == 'E' || is_digit((char)d);
}

/* Count data lines and take the field count from the first. */
static int survey(const csv_reader *r, int header, int64_t *rows, int64_t *fields,
                  csv_line *first) {
    size_t pos = 0;
    csv_line line = {0};
    if (header) next_line(r, &pos, &line);
    *rows = 0;
    while (next_line(r, &pos, &line)) {
        if (blank_line(&line)) continue;
        if (*rows == 0) {
            *first = line;
            *fields = count_fields(r, &line);
        }
        (*rows)++;
        /* A line with another field count ends the load with an error at
         * or before it; stopping here keeps the allocation within the
         * lines that fit (a huge first line cannot ask rows x its width). */
        if (count_fields(r, &line) != *fields) break;
    }
    if (*rows == 0) {
        csv_line top = {r->text, r->text, 1};
        return csv_error(r, &top, r->text, "no data lines%s", header ? " after the header" : "");
    }
    return VIKT_OK;
}

static int load(csv_reader *r, int header, int label_column, int64_t classes,
                vikt_dataset **out) {
    int64_t rows = 0, fields = 0;
    csv_line first = {0};
    int err = survey(r, header, &rows, &fields, &first);
    if (err) return err;
    if (fields < 2)
        return csv_error(r, &first, first.begin, "one field; need features and a label");
    int64_t label_col = label_column < 0 ? fields + label_column : label_column;
    if (label_col < 0 || label_col >= fields)
        return vikt__fail(r->m, VIKT_ERR_ARG, "%s: %s: label_column %d outside the %lld fields",
                          OP, r->path, label_column, (long long)fields);
    int64_t width = fields - 1;
    vikt__samples *s = vikt__samples_alloc(r->m, OP, rows, width, 1);
    if (!s) return VIKT_ERR_NOMEM;
    size_t pos = 0;
    csv_line line = {0};
    if (header) next_line(r, &pos, &line);
    int64_t row = 0, max_label = -1;
    while (!err && row < rows && next_line(r, &pos, &line)) {
        if (blank_line(&line)) continue;
        err = parse_line(r, &line, fields, label_col, classes, s->features + row * width,
                         &s->labels[row]);
        if (!err && s->labels[row] > max_label) max_label = s->labels[row];
        row++;
    }
    if (!err) {
        *out = vikt__dataset_new(r->m, OP, s, 1, &width, 0, classes > 0 ? classes : max_label + 1);
        if (!*out) err = VIKT_ERR_NOMEM;
    }
    if (err) vikt__samples_release(r->m, s);
    return err;
}

int vikt_dataset_load_csv(vikt_model *m, const char *path, int header, int label_column,
                          int delimiter, int64_t classes, vikt_dataset **out) {
    if (!out) return VIKT_ERR_NULL;
    *out = NULL;
    if (!m) return VIKT_ERR_NULL;
    if (!path) return vikt__fail(m, VIKT_ERR_NULL, "%s: path is NULL", OP);
    if (bad_delimiter(delimiter))
        return vikt__fail(m, VIKT_ERR_ARG, "%s: delimiter %d cannot separate numbers", OP, delimiter);
    if (classes < 0 || classes > 2147483647)
        return vikt__fail(m, VIKT_ERR_ARG, "%s: classes = %lld, need 0 to 2147483647", OP,
                          (long long)classes);
    csv_reader r = {m, path, NULL, 0, delimiter};
    char *text = NULL;
    int err = read_whole_file(m, path, &text, &r.len);
    if (err) return err;
    r.text = text;
    err = load(&r, header, label_column, classes, out);
    vikt__free(m, text, r.len + 1);
    return err;
}
