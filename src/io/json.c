/* A strict JSON reader (RFC 8259) for untrusted headers, written for the
 * safetensors loader: no allocation, no recursion deeper than the caller's
 * nesting limit, UTF-8 validated per Unicode Table 3-7 (no overlong forms,
 * no surrogates, nothing above U+10FFFF), \u escapes that must form
 * characters (a lone surrogate is an error, not U+FFFD), and the first error
 * kept with its byte offset and a fixed description.
 *
 * Two ways to use it: vikt__json_check() validates a whole text; the cursor
 * calls (peek, accept, string, uint) then walk it while the caller checks its
 * own structure. Strings are decoded in place, which is why the text is
 * mutable: a decoded string is never longer than its JSON form. */
#include "io.h"

#include <string.h>

void vikt__json_init(vikt__json *j, unsigned char *s, size_t n, int max_depth) {
    memset(j, 0, sizeof *j);
    j->s = s;
    j->n = n;
    j->max_depth = max_depth;
}

int vikt__json_fail(vikt__json *j, int err, const char *what) {
    if (!j->err) {
        j->err = err;
        j->what = what;
        j->err_at = j->pos;
    }
    return err;
}

static int is_ws(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int vikt__json_peek(vikt__json *j) {
    while (j->pos < j->n && is_ws(j->s[j->pos])) j->pos++;
    return j->pos < j->n ? j->s[j->pos] : -1;
}

int vikt__json_accept(vikt__json *j, int c) {
    if (vikt__json_peek(j) != c) return 0;
    j->pos++;
    return 1;
}

/* ---------------------------------------------------------------- UTF-8 */

/* The length (2 to 4) of the well-formed UTF-8 sequence at s, whose first
 * byte is >= 0x80, or 0 if it is not well formed (Unicode Table 3-7). */
static size_t utf8_seq(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (len == 0 || avail < len) return 0;
    /* The second byte's range is narrower after E0, ED, F0 and F4. */
    unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

int vikt__utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t k = s[i] < 0x80 ? 1 : utf8_seq(s + i, n - i);
        if (k == 0) return 0;
        i += k;
    }
    return 1;
}

static size_t utf8_put(uint32_t cp, unsigned char *out) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* -------------------------------------------------------------- strings */

/* Four hex digits at s[at...] into *v; 0 if they are not. */
static int hex4(const vikt__json *j, size_t at, uint32_t *v) {
    if (at > j->n || j->n - at < 4) return 0;
    *v = 0;
    for (size_t i = at; i < at + 4; i++) {
        int c = j->s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = *v << 4 | (uint32_t)d;
    }
    return 1;
}

/* A \uXXXX escape (a surrogate pair takes two) at pos, as UTF-8 in out. */
static int unicode_escape(vikt__json *j, unsigned char *out, size_t *k) {
    uint32_t cp, low;
    if (!hex4(j, j->pos + 2, &cp)) return vikt__json_fail(j, VIKT__JSON_SYNTAX, "invalid \\u escape");
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return vikt__json_fail(j, VIKT__JSON_UTF8, "unpaired surrogate in a \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        size_t next = j->pos + 6;
        if (next + 1 >= j->n || j->s[next] != '\\' || j->s[next + 1] != 'u' ||
            !hex4(j, next + 2, &low) || low < 0xDC00 || low > 0xDFFF)
            return vikt__json_fail(j, VIKT__JSON_UTF8, "unpaired surrogate in a \\u escape");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        j->pos += 6;
    }
    j->pos += 6;
    *k = utf8_put(cp, out);
    return VIKT__JSON_OK;
}

/* The escape at pos (a backslash), decoded into out. */
static int escape(vikt__json *j, unsigned char *out, size_t *k) {
    if (j->pos + 1 >= j->n) return vikt__json_fail(j, VIKT__JSON_SYNTAX, "unterminated string");
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    int c = j->s[j->pos + 1];
    if (c == 'u') return unicode_escape(j, out, k);
    const char *hit = c ? strchr(from, c) : NULL;
    if (!hit) return vikt__json_fail(j, VIKT__JSON_SYNTAX, "invalid escape in a string");
    out[0] = (unsigned char)to[hit - from];
    *k = 1;
    j->pos += 2;
    return VIKT__JSON_OK;
}

/* One character of a string at pos (not the closing quote) into out. */
static int string_char(vikt__json *j, unsigned char *out, size_t *k) {
    unsigned char c = j->s[j->pos];
    if (c < 0x20) return vikt__json_fail(j, VIKT__JSON_SYNTAX, "control character in a string");
    if (c == '\\') return escape(j, out, k);
    *k = c < 0x80 ? 1 : utf8_seq(j->s + j->pos, j->n - j->pos);
    if (*k == 0) return vikt__json_fail(j, VIKT__JSON_UTF8, "invalid UTF-8");
    memcpy(out, j->s + j->pos, *k);
    j->pos += *k;
    return VIKT__JSON_OK;
}

/* The string at pos; decoded to s[out...] unless out is SIZE_MAX. Each
 * character is read whole before it is written, and it never decodes longer
 * than it is written, so with out <= opening quote + 1 the writes stay
 * behind the reads. */
static int scan_string(vikt__json *j, size_t out, size_t *len) {
    if (vikt__json_peek(j) != '"') return vikt__json_fail(j, VIKT__JSON_SYNTAX, "expected a string");
    j->pos++;
    size_t count = 0;
    for (;;) {
        if (j->pos >= j->n) return vikt__json_fail(j, VIKT__JSON_SYNTAX, "unterminated string");
        if (j->s[j->pos] == '"') break;
        unsigned char ch[4];
        size_t k;
        int rc = string_char(j, ch, &k);
        if (rc) return rc;
        if (out != SIZE_MAX) memcpy(j->s + out + count, ch, k);
        count += k;
    }
    j->pos++;
    if (out != SIZE_MAX) j->s[out + count] = '\0';
    if (len) *len = count;
    return VIKT__JSON_OK;
}

int vikt__json_string(vikt__json *j, size_t out, size_t *len) {
    return scan_string(j, out, len);
}

/* -------------------------------------------------------------- numbers */

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static size_t digits(vikt__json *j) {
    size_t start = j->pos;
    while (j->pos < j->n && is_digit(j->s[j->pos])) j->pos++;
    return j->pos - start;
}

/* -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int scan_number(vikt__json *j) {
    if (j->s[j->pos] == '-') j->pos++;
    size_t first = j->pos;
    size_t n = digits(j);
    if (n == 0) return vikt__json_fail(j, VIKT__JSON_SYNTAX, "invalid number");
    if (n > 1 && j->s[first] == '0') {
        j->pos = first;
        return vikt__json_fail(j, VIKT__JSON_SYNTAX, "number with a leading zero");
    }
    if (j->pos < j->n && j->s[j->pos] == '.') {
        j->pos++;
        if (digits(j) == 0) return vikt__json_fail(j, VIKT__JSON_SYNTAX, "invalid number");
    }
    if (j->pos < j->n && (j->s[j->pos] == 'e' || j->s[j->pos] == 'E')) {
        j->pos++;
        if (j->pos < j->n && (j->s[j->pos] == '+' || j->s[j->pos] == '-')) j->pos++;
        if (digits(j) == 0) return vikt__json_fail(j, VIKT__JSON_SYNTAX, "invalid number");
    }
    return VIKT__JSON_OK;
}

int vikt__json_uint(vikt__json *j, uint64_t max, uint64_t *value) {
    int c = vikt__json_peek(j);
    if (!is_digit(c)) return vikt__json_fail(j, VIKT__JSON_SYNTAX, "expected a non-negative integer");
    size_t start = j->pos;
    uint64_t v = 0;
    int over = 0;
    for (; j->pos < j->n && is_digit(j->s[j->pos]); j->pos++) {
        uint64_t d = (uint64_t)(j->s[j->pos] - '0');
        if (d > max || v > (max - d) / 10) over = 1;
        else v = v * 10 + d;
    }
    int more = j->pos < j->n && (j->s[j->pos] == '.' || j->s[j->pos] == 'e' || j->s[j->pos] == 'E');
    if (more || (j->pos - start > 1 && j->s[start] == '0')) {
        j->pos = start;
        return vikt__json_fail(j, VIKT__JSON_SYNTAX, "expected a non-negative integer");
    }
    if (over) {
        j->pos = start;
        return vikt__json_fail(j, VIKT__JSON_RANGE, "integer out of range");
    }
    *value = v;
    return VIKT__JSON_OK;
}

/* ----------------------------------------------------------- validation */

static int check_value(vikt__json *j, int depth);

static int check_literal(vikt__json *j, const char *word) {
    size_t len = strlen(word);
    if (j->n - j->pos < len || memcmp(j->s + j->pos, word, len) != 0)
        return vikt__json_fail(j, VIKT__JSON_SYNTAX, "unexpected character");
    j->pos += len;
    return VIKT__JSON_OK;
}

static int check_object(vikt__json *j, int depth) {
    j->pos++; /* '{' */
    if (vikt__json_accept(j, '}')) return VIKT__JSON_OK;
    for (;;) {
        if (vikt__json_peek(j) != '"')
            return vikt__json_fail(j, VIKT__JSON_SYNTAX, "expected a string key in an object");
        int rc = scan_string(j, SIZE_MAX, NULL);
        if (rc) return rc;
        if (!vikt__json_accept(j, ':'))
            return vikt__json_fail(j, VIKT__JSON_SYNTAX, "expected ':' after a key");
        if ((rc = check_value(j, depth))) return rc;
        if (vikt__json_accept(j, '}')) return VIKT__JSON_OK;
        if (!vikt__json_accept(j, ','))
            return vikt__json_fail(j, VIKT__JSON_SYNTAX, "expected ',' or '}' in an object");
    }
}

static int check_array(vikt__json *j, int depth) {
    j->pos++; /* '[' */
    if (vikt__json_accept(j, ']')) return VIKT__JSON_OK;
    for (;;) {
        int rc = check_value(j, depth);
        if (rc) return rc;
        if (vikt__json_accept(j, ']')) return VIKT__JSON_OK;
        if (!vikt__json_accept(j, ','))
            return vikt__json_fail(j, VIKT__JSON_SYNTAX, "expected ',' or ']' in an array");
    }
}

/* One value; depth counts the arrays and objects around it. */
static int check_value(vikt__json *j, int depth) {
    int c = vikt__json_peek(j);
    if (c == '{' || c == '[') {
        if (depth >= j->max_depth)
            return vikt__json_fail(j, VIKT__JSON_DEPTH, "arrays and objects nested too deeply");
        return c == '{' ? check_object(j, depth + 1) : check_array(j, depth + 1);
    }
    if (c == '"') return scan_string(j, SIZE_MAX, NULL);
    if (c == '-' || is_digit(c)) return scan_number(j);
    if (c == 't') return check_literal(j, "true");
    if (c == 'f') return check_literal(j, "false");
    if (c == 'n') return check_literal(j, "null");
    if (c < 0) return vikt__json_fail(j, VIKT__JSON_SYNTAX, "unexpected end of text");
    if (c >= 0x80 && !utf8_seq(j->s + j->pos, j->n - j->pos))
        return vikt__json_fail(j, VIKT__JSON_UTF8, "invalid UTF-8");
    return vikt__json_fail(j, VIKT__JSON_SYNTAX, "unexpected character");
}

int vikt__json_check(vikt__json *j) {
    j->pos = 0;
    int rc = check_value(j, 0);
    if (rc) return rc;
    if (vikt__json_peek(j) >= 0) {
        int c = j->s[j->pos];
        if (c >= 0x80 && !utf8_seq(j->s + j->pos, j->n - j->pos))
            return vikt__json_fail(j, VIKT__JSON_UTF8, "invalid UTF-8");
        return vikt__json_fail(j, VIKT__JSON_SYNTAX, "text after the value");
    }
    j->pos = 0;
    return VIKT__JSON_OK;
}
