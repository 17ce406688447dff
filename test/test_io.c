/* The files layer from the inside (this program links the library's
 * objects, not the archive, to reach src/io/io.h):
 *
 * - CRC32C against the RFC 3720 vectors and a bitwise reference, every
 *   entry of the slicing tables, chaining and alignment;
 * - the strict JSON reader: grammar, UTF-8 (Unicode Table 3-7), escapes
 *   decoded in place, the nesting limit, integers;
 * - fault injection: a short write, ENOSPC or EIO at every file operation of
 *   a save leaves the previous file byte-identical and no temporary; the
 *   same at every operation of a load leaves the model unchanged (or, past
 *   the point of no return, reports it). */
#define _POSIX_C_SOURCE 200809L

#include "support.h"

#include "../src/io/io.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ CRC */

static uint32_t crc_bitwise(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

static void crc32c_vectors(void **state) {
    (void)state;
    unsigned char buf[32];
    assert_int_equal(vikt__crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(vikt__crc32c(0, NULL, 0), 0);
    /* RFC 3720 B.4: 32 zeros, 32 ones, ascending, descending. */
    memset(buf, 0, 32);
    assert_int_equal(vikt__crc32c(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xFF, 32);
    assert_int_equal(vikt__crc32c(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) buf[i] = (unsigned char)i;
    assert_int_equal(vikt__crc32c(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) buf[i] = (unsigned char)(31 - i);
    assert_int_equal(vikt__crc32c(0, buf, 32), 0x113FDB5Cu);
}

/* A block of eight zero bytes but one, at each position with each value,
 * reaches every entry of the eight slicing tables. */
static void crc32c_every_table_entry(void **state) {
    (void)state;
    unsigned char block[8];
    for (int pos = 0; pos < 8; pos++)
        for (int v = 0; v < 256; v++) {
            memset(block, 0, 8);
            block[pos] = (unsigned char)v;
            if (vikt__crc32c(0, block, 8) != crc_bitwise(block, 8))
                fail_msg("byte %d = %d: %08x, bitwise %08x", pos, v, vikt__crc32c(0, block, 8),
                         crc_bitwise(block, 8));
        }
}

static void crc32c_chaining_and_alignment(void **state) {
    (void)state;
    unsigned char buf[1100];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)((s = s * 1103515245u + 12345u) >> 16);
    for (size_t start = 0; start < 9; start++)
        for (size_t len = 0; len < 70; len++)
            assert_int_equal(vikt__crc32c(0, buf + start, len), crc_bitwise(buf + start, len));
    uint32_t whole = vikt__crc32c(0, buf, sizeof buf);
    assert_int_equal(whole, crc_bitwise(buf, sizeof buf));
    for (size_t k = 0; k <= sizeof buf; k += 37)
        assert_int_equal(vikt__crc32c(vikt__crc32c(0, buf, k), buf + k, sizeof buf - k), whole);
}

/* ----------------------------------------------------------------- JSON */

static int check_json(const char *text, size_t n, int depth, vikt__json *j) {
    static unsigned char buf[4096];
    assert_true(n <= sizeof buf);
    memcpy(buf, text, n);
    vikt__json_init(j, buf, n, depth);
    return vikt__json_check(j);
}

static int json(const char *text, int depth) {
    vikt__json j;
    return check_json(text, strlen(text), depth, &j);
}

static void json_grammar(void **state) {
    (void)state;
    static const char *valid[] = {
        "{}", "[]", "\"\"", "0", "-0", "1.5", "-0.5e+10", "2E-3", "true", "false", "null",
        " \t\r\n{ \"a\" : [ 1 , 2 , { } ] , \"b\" : null } \n", "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"]",
        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"", "{\"\":\"\"}", "123456789012345678901234567890",
    };
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        if (json(valid[i], 64) != VIKT__JSON_OK) fail_msg("rejected: %s", valid[i]);
    static const struct {
        const char *text;
        int err;
    } invalid[] = {
        {"", VIKT__JSON_SYNTAX},           {"   ", VIKT__JSON_SYNTAX},
        {"{", VIKT__JSON_SYNTAX},          {"{\"a\"}", VIKT__JSON_SYNTAX},
        {"{\"a\":}", VIKT__JSON_SYNTAX},   {"{\"a\":1,}", VIKT__JSON_SYNTAX},
        {"[1,]", VIKT__JSON_SYNTAX},       {"[1 2]", VIKT__JSON_SYNTAX},
        {"{\"a\":1 \"b\":2}", VIKT__JSON_SYNTAX}, {"{1:2}", VIKT__JSON_SYNTAX},
        {"01", VIKT__JSON_SYNTAX},         {"1.", VIKT__JSON_SYNTAX},
        {".5", VIKT__JSON_SYNTAX},         {"-", VIKT__JSON_SYNTAX},
        {"1e", VIKT__JSON_SYNTAX},         {"+1", VIKT__JSON_SYNTAX},
        {"NaN", VIKT__JSON_SYNTAX},        {"nul", VIKT__JSON_SYNTAX},
        {"tru", VIKT__JSON_SYNTAX},        {"\"abc", VIKT__JSON_SYNTAX},
        {"\"\\x\"", VIKT__JSON_SYNTAX},    {"\"\\u12\"", VIKT__JSON_SYNTAX},
        {"\"\\u12g4\"", VIKT__JSON_SYNTAX}, {"\"a\tb\"", VIKT__JSON_SYNTAX},
        {"'a'", VIKT__JSON_SYNTAX},        {"{} {}", VIKT__JSON_SYNTAX},
        {"[1]]", VIKT__JSON_SYNTAX},       {"\"\\", VIKT__JSON_SYNTAX},
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        vikt__json j;
        int err = check_json(invalid[i].text, strlen(invalid[i].text), 64, &j);
        if (err != invalid[i].err) fail_msg("'%s': %d, want %d", invalid[i].text, err, invalid[i].err);
        assert_non_null(j.what);
        assert_true(j.err_at <= strlen(invalid[i].text));
    }
    /* A NUL byte is text like any other: outside a string it is an error. */
    vikt__json j;
    assert_int_equal(check_json("{}\0", 3, 64, &j), VIKT__JSON_SYNTAX);
    assert_string_equal(j.what, "text after the value");
    assert_int_equal(j.err_at, 2);
    assert_int_equal(check_json("[1,\n  x]", 8, 64, &j), VIKT__JSON_SYNTAX);
    assert_int_equal(j.err_at, 6);
}

static void json_nesting_limit(void **state) {
    (void)state;
    char text[200];
    for (int depth = 1; depth <= 64; depth++) {
        memset(text, '[', (size_t)depth);
        memset(text + depth, ']', (size_t)depth);
        text[2 * depth] = '\0';
        assert_int_equal(json(text, 64), VIKT__JSON_OK);
        assert_int_equal(json(text, depth), VIKT__JSON_OK);
        assert_int_equal(json(text, depth - 1), VIKT__JSON_DEPTH);
    }
    assert_int_equal(json("{\"a\":{\"b\":[{}]}}", 4), VIKT__JSON_OK);
    vikt__json j;
    assert_int_equal(check_json("{\"a\":{\"b\":[{}]}}", 15, 3, &j), VIKT__JSON_DEPTH);
    assert_int_equal(j.err_at, 11);
    /* Far past the limit: the reader stops at the limit, no deep recursion. */
    static char deep[4000];
    memset(deep, '[', 2000);
    memset(deep + 2000, ']', 2000);
    assert_int_equal(check_json(deep, 4000, 64, &j), VIKT__JSON_DEPTH);
    assert_int_equal(j.err_at, 64);
}

static void json_utf8(void **state) {
    (void)state;
    static const char *bad[] = {
        "\"\xc0\x80\"",         "\"\xc1\xbf\"",         "\"\xe0\x80\x80\"",     "\"\xe0\x9f\xbf\"",
        "\"\xed\xa0\x80\"",     "\"\xed\xbf\xbf\"",     "\"\xf0\x80\x80\x80\"", "\"\xf0\x8f\xbf\xbf\"",
        "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\x80\"",             "\"\xbf\"",
        "\"\xc3\"",             "\"\xe2\x82\"",         "\"\xf0\x9f\x98\"",     "\"\xfe\"",
        "\"\xff\"",             "\"\xc3\x28\"",         "\"\xe2\x28\xa1\"",     "\xc3\xa9",
        "\"\\ud800\"",          "\"\\udc00\"",          "\"\\ud800\\u0041\"",   "\"\\ud800x\"",
        "\"\\udbff\\udbff\"",   "\"\\ud800\\",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int err = json(bad[i], 64);
        /* A non-ASCII byte outside a string is invalid UTF-8 or a syntax error. */
        if (err != VIKT__JSON_UTF8 && !(i == 19 && err == VIKT__JSON_SYNTAX))
            fail_msg("case %zu: %d", i, err);
    }
    static const char *good[] = {"\"\xc2\x80\"", "\"\xdf\xbf\"", "\"\xe0\xa0\x80\"", "\"\xed\x9f\xbf\"",
                                 "\"\xee\x80\x80\"", "\"\xf0\x90\x80\x80\"", "\"\xf4\x8f\xbf\xbf\"",
                                 "\"\\ud800\\udc00\"", "\"\\udbff\\udfff\""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) assert_int_equal(json(good[i], 64), VIKT__JSON_OK);
    assert_true(vikt__utf8_valid((const unsigned char *)"a\xc3\xa9\xf0\x9f\x98\x80", 7));
    assert_false(vikt__utf8_valid((const unsigned char *)"a\xc3", 2));
    assert_false(vikt__utf8_valid((const unsigned char *)"\xed\xa0\x80", 3));
}

/* Strings decode in place, behind the read position. */
static void json_decode_in_place(void **state) {
    (void)state;
    unsigned char buf[] = "  \"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00\\u0000z\" ,";
    vikt__json j;
    vikt__json_init(&j, buf, sizeof buf - 1, 8);
    assert_int_equal(vikt__json_peek(&j), '"');
    size_t len;
    assert_int_equal(vikt__json_string(&j, j.pos + 1, &len), VIKT__JSON_OK);
    static const unsigned char want[] = "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0z";
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(buf + 3, want, sizeof want); /* with the NUL the reader wrote */
    assert_true(vikt__json_accept(&j, ','));
    assert_int_equal(vikt__json_peek(&j), -1);
    /* To an earlier position: a key decoded over text already read. */
    unsigned char b2[] = "xxxxx\"key\"";
    vikt__json_init(&j, b2, 10, 8);
    j.pos = 5;
    assert_int_equal(vikt__json_string(&j, 0, &len), VIKT__JSON_OK);
    assert_string_equal((char *)b2, "key");
    assert_int_equal(j.pos, 10);
}

static int uint_of(const char *text, uint64_t max, uint64_t *v) {
    static unsigned char buf[64];
    vikt__json j;
    memcpy(buf, text, strlen(text));
    vikt__json_init(&j, buf, strlen(text), 8);
    return vikt__json_uint(&j, max, v);
}

static void json_integers(void **state) {
    (void)state;
    uint64_t v;
    assert_int_equal(uint_of(" 0", UINT64_MAX, &v), VIKT__JSON_OK);
    assert_int_equal(v, 0);
    assert_int_equal(uint_of("123]", UINT64_MAX, &v), VIKT__JSON_OK);
    assert_int_equal(v, 123);
    assert_int_equal(uint_of("18446744073709551615", UINT64_MAX, &v), VIKT__JSON_OK);
    assert_true(v == UINT64_MAX);
    assert_int_equal(uint_of("18446744073709551616", UINT64_MAX, &v), VIKT__JSON_RANGE);
    assert_int_equal(uint_of("99999999999999999999999", UINT64_MAX, &v), VIKT__JSON_RANGE);
    assert_int_equal(uint_of("9223372036854775807", INT64_MAX, &v), VIKT__JSON_OK);
    assert_int_equal(uint_of("9223372036854775808", INT64_MAX, &v), VIKT__JSON_RANGE);
    assert_int_equal(uint_of("5", 4, &v), VIKT__JSON_RANGE);
    assert_int_equal(uint_of("5", 0, &v), VIKT__JSON_RANGE);
    assert_int_equal(uint_of("-1", UINT64_MAX, &v), VIKT__JSON_SYNTAX);
    assert_int_equal(uint_of("1.0", UINT64_MAX, &v), VIKT__JSON_SYNTAX);
    assert_int_equal(uint_of("1e3", UINT64_MAX, &v), VIKT__JSON_SYNTAX);
    assert_int_equal(uint_of("01", UINT64_MAX, &v), VIKT__JSON_SYNTAX);
    assert_int_equal(uint_of("\"1\"", UINT64_MAX, &v), VIKT__JSON_SYNTAX);
}

/* --------------------------------------------------------- fault injection */

/* Whether the file at `path` exists and holds exactly these n bytes. */
static int file_is(const char *path, const unsigned char *b, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fclose(f);
    size_t m;
    unsigned char *now = vt_read_file(path, &m);
    int same = m == n && memcmp(now, b, n) == 0;
    free(now);
    return same;
}

static vikt_model *two_versions(const char *path, int version) {
    vikt_model *m = vt_model(1);
    vikt_tensor *w = vikt_param(m, "w", 2, (int64_t[]){64, 300}, VIKT_INIT_ZEROS);
    vikt_tensor *b = vikt_param(m, "b", 1, (int64_t[]){64}, VIKT_INIT_ZEROS);
    vikt_buffer(m, "stats", 1, (int64_t[]){3}, 1.0f);
    vt_fill(vikt_tensor_data(w), 64 * 300, (uint32_t)version, -1, 1);
    vt_fill(vikt_tensor_data(b), 64, (uint32_t)version + 7, -1, 1);
    if (path) assert_int_equal(vikt_save(m, path), VIKT_OK);
    return m;
}

static const char *fault_name(int kind) {
    return kind == VIKT__FAULT_EIO ? "EIO" : kind == VIKT__FAULT_ENOSPC ? "ENOSPC" : "short";
}

/* After every fault of a save: the old file byte-identical and no
 * temporary, or (short transfers) the new file; only a failed directory
 * sync, after the rename, leaves the new file and says so. */
static void save_faults(void **state) {
    (void)state;
    char *dir = vt_tmpdir("io");
    char path[128], ref[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(ref, sizeof ref, "%s/../%s-new.ref", dir, strrchr(dir, '/') + 1);
    vikt_model *old = two_versions(path, 1);
    size_t old_n, new_n;
    unsigned char *old_bytes = vt_read_file(path, &old_n);
    vikt_model *m = two_versions(ref, 2);
    unsigned char *new_bytes = vt_read_file(ref, &new_n);
    unlink(ref);
    static const int kinds[] = {VIKT__FAULT_EIO, VIKT__FAULT_ENOSPC, VIKT__FAULT_SHORT};
    for (int k = 0; k < 3; k++) {
        int64_t n, ops = 0;
        for (n = 1;; n++) {
            vt_write_file(path, old_bytes, old_n);
            assert_true(vikt__io_fault(m, kinds[k], n) >= 0);
            int rc = vikt_save(m, path);
            ops = vikt__io_fault(m, VIKT__FAULT_NONE, 0);
            assert_int_equal(vt_count_entries(dir, ""), 1); /* no temporary, whatever happened */
            if (ops < n || kinds[k] == VIKT__FAULT_SHORT) {
                assert_int_equal(rc, VIKT_OK);
                assert_true(file_is(path, new_bytes, new_n));
                if (ops < n) break;
                continue;
            }
            assert_int_equal(rc, VIKT_ERR_IO);
            const char *msg = vikt_model_errmsg(m);
            assert_non_null(strstr(msg, "vikt_save: "));
            assert_non_null(strstr(msg, "model.safetensors: "));
            assert_non_null(strstr(msg, kinds[k] == VIKT__FAULT_EIO ? "Input/output error" : "No space left"));
            if (strstr(msg, "syncing its directory"))
                assert_true(file_is(path, new_bytes, new_n));
            else if (!file_is(path, old_bytes, old_n))
                fail_msg("%s at operation %lld: the old file changed (%s)", fault_name(kinds[k]),
                         (long long)n, msg);
            vikt_model_clear_error(m);
        }
        print_message("save: %s at each of %lld file operations\n", fault_name(kinds[k]), (long long)ops);
        assert_true(ops >= 9); /* open, writes, fsync, close, rename, dir open/fsync/close */
    }
    /* With no previous file: a failure leaves none. */
    unlink(path);
    vikt__io_fault(m, VIKT__FAULT_EIO, 2);
    assert_int_equal(vikt_save(m, path), VIKT_ERR_IO);
    vikt__io_fault(m, VIKT__FAULT_NONE, 0);
    assert_int_equal(vt_count_entries(dir, ""), 0);
    free(old_bytes), free(new_bytes);
    vikt_model_destroy(old);
    vikt_model_destroy(m);
    rmdir(dir);
    free(dir);
}

/* After every fault of a load: VIKT_ERR_IO and the model unchanged while
 * the data is only being verified; the copy pass is the one place where an
 * error can leave existing tensors partly loaded, and the call says so by
 * failing. A model that was empty is always left empty. */
static void load_faults(void **state) {
    (void)state;
    char *dir = vt_tmpdir("io");
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    vikt_model *src = two_versions(path, 3);
    static const int kinds[] = {VIKT__FAULT_EIO, VIKT__FAULT_ENOSPC, VIKT__FAULT_SHORT};
    for (int k = 0; k < 3; k++) {
        int64_t n, total = 0;
        /* A clean run counts the operations; the last 3 are the copy reads. */
        vikt_model *probe = two_versions(NULL, 4);
        vikt__io_fault(probe, VIKT__FAULT_NONE, 0);
        assert_int_equal(vikt_load(probe, path, VIKT_LOAD_STRICT), VIKT_OK);
        total = vikt__io_fault(probe, VIKT__FAULT_NONE, 0);
        vikt_model_destroy(probe);
        for (n = 1; n <= total; n++) {
            vikt_model *m = two_versions(NULL, 4), *empty = vt_model(1);
            float before = vikt_tensor_data(vikt_param_find(m, "w"))[0];
            vikt__io_fault(m, kinds[k], n);
            vikt__io_fault(empty, kinds[k], n);
            int rc = vikt_load(m, path, VIKT_LOAD_STRICT), rc_empty = vikt_load(empty, path, VIKT_LOAD_PARTIAL);
            if (kinds[k] == VIKT__FAULT_SHORT) {
                assert_int_equal(rc, VIKT_OK);
                assert_int_equal(rc_empty, VIKT_OK);
                assert_float_equal(vikt_tensor_data(vikt_param_find(m, "w"))[0],
                                   vikt_tensor_data(vikt_param_find(src, "w"))[0], 0);
            } else {
                assert_int_equal(rc, VIKT_ERR_IO);
                assert_int_equal(rc_empty, VIKT_ERR_IO);
                assert_non_null(strstr(vikt_model_errmsg(m), "model.safetensors: "));
                assert_int_equal(vikt_param_count(empty), 0);
                assert_int_equal(vikt_buffer_count(empty), 0);
                if (n <= total - 3) assert_float_equal(vikt_tensor_data(vikt_param_find(m, "w"))[0], before, 0);
                char report[512];
                vikt_load_report(m, report, sizeof report);
                assert_memory_equal(report, vikt_model_errmsg(m), strlen(vikt_model_errmsg(m)));
            }
            vikt_model_destroy(m);
            vikt_model_destroy(empty);
        }
        print_message("load: %s at each of %lld file operations\n", fault_name(kinds[k]), (long long)total);
    }
    vikt_model_destroy(src);
    vt_rmdir(dir);
}

/* A memory source is read like a file and never past its end. */
static void memory_source(void **state) {
    (void)state;
    vikt_model *m = vt_model(1);
    vikt__file f;
    unsigned char data[4] = {1, 2, 3, 4}, out[4];
    vikt__file_memory(&f, m, "t", data, 4);
    assert_int_equal(vikt__file_read(&f, 1, out, 3), VIKT_OK);
    assert_memory_equal(out, data + 1, 3);
    assert_int_equal(vikt__file_read(&f, 2, out, 3), VIKT_ERR_IO);
    vt_expect_error(m, VIKT_ERR_IO, "t: <memory>: read of 3 bytes at 2 is past the end", NULL);
    assert_int_equal(vikt__file_read(&f, UINT64_MAX, out, 1), VIKT_ERR_IO);
    vikt_model_clear_error(m);
    vikt__file_close(&f);
    vikt_model_destroy(m);
}

/* ---------------------------------------------------------------- kinds */

static void put_le(unsigned char *p, uint64_t v, size_t size);

/* A model with "a" and "b" of 2 floats, each a parameter or (bit set in
 * buffers: 1 for "a", 2 for "b") a buffer, holding base, base + 1, ... */
static vikt_model *kinds_model(int buffers, float base) {
    vikt_model *m = vt_model(1);
    const char *names[2] = {"a", "b"};
    for (int i = 0; i < 2; i++) {
        vikt_tensor *t = buffers >> i & 1 ? vikt_buffer(m, names[i], 1, (int64_t[]){2}, 0.0f)
                                          : vikt_param(m, names[i], 1, (int64_t[]){2}, VIKT_INIT_ZEROS);
        vikt_tensor_data(t)[0] = base + 2 * i, vikt_tensor_data(t)[1] = base + 2 * i + 1;
    }
    return m;
}

static int holds(vikt_model *m, float base) {
    const float *a = vikt_tensor_data(vikt_param_find(m, "a") ? vikt_param_find(m, "a") : vikt_buffer_find(m, "a"));
    const float *b = vikt_tensor_data(vikt_param_find(m, "b") ? vikt_param_find(m, "b") : vikt_buffer_find(m, "b"));
    return a[0] == base && a[1] == base + 1 && b[0] == base + 2 && b[1] == base + 3;
}

/* A safetensors image of "a" and "b" (F32 [2], values 10..13) with extra
 * metadata pairs (JSON text, may be empty). */
static unsigned char *kinds_image(const char *meta, size_t *len) {
    char header[512];
    int n = snprintf(header, sizeof header,
                     "{\"__metadata__\":{\"format\":\"pt\"%s},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                     meta);
    *len = 8 + (size_t)n + 16;
    unsigned char *img = malloc(*len);
    put_le(img, (uint64_t)n, 8);
    memcpy(img + 8, header, (size_t)n);
    const float v[4] = {10, 11, 12, 13};
    memcpy(img + 8 + n, v, sizeof v);
    return img;
}

/* A file that marks kinds loads a buffer into a buffer only; one that marks
 * none (PyTorch's) matches by name. Checkpoints and FedAvg files agree. */
static void kinds_are_matched(void **state) {
    (void)state;
    char *dir = vt_tmpdir("io"), path[128], report[1024];
    snprintf(path, sizeof path, "%s/k.safetensors", dir);
    vikt_model *src = kinds_model(2, 10); /* "b" is a buffer */
    assert_int_equal(vikt_save(src, path), VIKT_OK);

    vikt_model *same = kinds_model(2, 0);
    assert_int_equal(vikt_load(same, path, VIKT_LOAD_STRICT), VIKT_OK);
    assert_true(holds(same, 10));

    /* "a" a buffer and "b" a parameter in the model: both clash. */
    vikt_model *swapped = kinds_model(1, 0);
    assert_int_equal(vikt_load(swapped, path, VIKT_LOAD_STRICT), VIKT_ERR_SHAPE);
    vt_expect_error(swapped, VIKT_ERR_SHAPE, "2 mismatched",
                    "'b', file buffer 2, model parameter 2");
    assert_true(vikt_load_report(swapped, report, sizeof report) > 0);
    assert_non_null(strstr(report, "b  file buffer 2, model parameter 2"));
    assert_non_null(strstr(report, "a  file parameter 2, model buffer 2"));
    assert_true(holds(swapped, 0));
    assert_int_equal(vikt_load(swapped, path, VIKT_LOAD_PARTIAL), VIKT_OK);
    assert_int_equal(vikt_load_report_count(swapped, VIKT_LOAD_MISMATCHED), 2);
    assert_int_equal(vikt_load_report_count(swapped, VIKT_LOAD_LOADED), 0);
    assert_true(holds(swapped, 0));

    /* A checkpoint goes through the same matching. */
    vikt_optimizer *opt;
    assert_int_equal(vikt_sgd_create(src, 0.1f, &opt), VIKT_OK);
    assert_int_equal(vikt_checkpoint_save(src, opt, path), VIKT_OK);
    vikt_optimizer *their;
    assert_int_equal(vikt_sgd_create(swapped, 0.1f, &their), VIKT_OK);
    assert_int_equal(vikt_checkpoint_load(swapped, their, path), VIKT_ERR_SHAPE);
    vt_expect_error(swapped, VIKT_ERR_SHAPE, "vikt_checkpoint_load", "mismatched");
    assert_true(holds(swapped, 0));
    vikt_optimizer_destroy(their), vikt_optimizer_destroy(opt);

    /* So does FedAvg over files. */
    assert_int_equal(vikt_save(src, path), VIKT_OK);
    const char *paths[1] = {path};
    assert_int_equal(vikt_fedavg_files(swapped, paths, (const double[]){1}, 1), VIKT_ERR_SHAPE);
    vt_expect_error(swapped, VIKT_ERR_SHAPE, "is a buffer, dst has a parameter", "'b'");
    assert_true(holds(swapped, 0));
    assert_int_equal(vikt_fedavg_files(same, paths, (const double[]){1}, 1), VIKT_OK);

    /* No kinds in the file: by name, whatever the model's kinds. */
    size_t len;
    unsigned char *img = kinds_image("", &len);
    assert_int_equal(vikt_load_buffer(swapped, img, len, VIKT_LOAD_STRICT), VIKT_OK);
    assert_true(holds(swapped, 10));
    free(img);
    /* An explicit "parameter" clashes with a buffer too. */
    img = kinds_image(",\"vikt.kind.a\":\"parameter\"", &len);
    vikt_model *fresh = kinds_model(1, 0);
    assert_int_equal(vikt_load_buffer(fresh, img, len, VIKT_LOAD_STRICT), VIKT_ERR_SHAPE);
    vt_expect_error(fresh, VIKT_ERR_SHAPE, "1 mismatched", "'a'");
    assert_true(holds(fresh, 0));
    free(img);

    vikt_model_destroy(fresh), vikt_model_destroy(swapped), vikt_model_destroy(same);
    vikt_model_destroy(src);
    vt_rmdir(dir);
}

/* ------------------------------------------------------- dtype conversion */

/* Independent decodings (from the formats' definitions, through ldexp) to
 * check the reader's bit manipulation against. */
static float ref_minifloat(unsigned bits, int exp_bits, int man_bits, int has_inf) {
    unsigned sign = bits >> (exp_bits + man_bits) & 1u;
    unsigned e = bits >> man_bits & ((1u << exp_bits) - 1), m = bits & ((1u << man_bits) - 1);
    unsigned top = (1u << exp_bits) - 1;
    int bias = (1 << (exp_bits - 1)) - 1;
    double v;
    if (has_inf && e == top) v = m ? NAN : INFINITY;
    else if (!has_inf && e == top && m == (1u << man_bits) - 1) v = NAN;
    else if (e == 0) v = ldexp((double)m, 1 - bias - man_bits);
    else v = ldexp(1.0 + ldexp((double)m, -man_bits), (int)e - bias);
    return (float)(sign ? -v : v);
}

/* A file in memory with one tensor per dtype, shape [n], raw bytes given. */
typedef struct dt_case {
    const char *dtype;
    size_t size;
    int64_t n;
    unsigned char *raw;
    float *want;
} dt_case;

static unsigned char *dt_file(const dt_case *c, int k, size_t *len) {
    char header[2048];
    size_t h = 0, off = 0;
    h += (size_t)snprintf(header + h, sizeof header - h, "{");
    for (int i = 0; i < k; i++) {
        size_t bytes = c[i].size * (size_t)c[i].n;
        h += (size_t)snprintf(header + h, sizeof header - h,
                              "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                              i ? "," : "", c[i].dtype, c[i].dtype, (long long)c[i].n, off, off + bytes);
        off += bytes;
    }
    h += (size_t)snprintf(header + h, sizeof header - h, "}");
    assert_true(h < sizeof header);
    *len = 8 + h + off;
    unsigned char *blob = malloc(*len);
    assert_non_null(blob);
    for (int b = 0; b < 8; b++) blob[b] = (unsigned char)((uint64_t)h >> (8 * b));
    memcpy(blob + 8, header, h);
    for (int i = 0, at = 0; i < k; at += (int)(c[i].size * (size_t)c[i].n), i++)
        memcpy(blob + 8 + h + at, c[i].raw, c[i].size * (size_t)c[i].n);
    return blob;
}

static void put_le(unsigned char *p, uint64_t v, size_t size) {
    for (size_t b = 0; b < size; b++) p[b] = (unsigned char)(v >> (8 * b));
}

static int same_float(float a, float b) {
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* Every dtype reads as float32 through the one conversion table: every
 * value of the 8- and 16-bit types (those past 64 KiB cross a chunk), and
 * the rounding edges of the 32- and 64-bit integers. */
static void every_dtype_reads_as_float32(void **state) {
    (void)state;
    enum { ALL8 = 256, ALL16 = 65536, WIDE = 12 };
    static const uint64_t wide[WIDE] = {0, 1, 16777216, 16777217, 16777219, 2147483647,
                                        0x80000000u, 0xFFFFFFFFu, 0x7FFFFFFFFFFFFFFFull,
                                        0x8000000000000000ull, 0xFFFFFFFFFFFFFFFFull, 0xFFFFFFFFFEFFFFFDull};
    /* As U32/U64 (the low 32 bits for U32), and as I32/I64. */
    static const float want_u32[WIDE] = {0, 1, 16777216.0f, 16777216.0f, 16777220.0f, 2147483648.0f,
                                         2147483648.0f, 4294967296.0f, 4294967296.0f, 0, 4294967296.0f,
                                         4278190080.0f};
    static const float want_i32[WIDE] = {0, 1, 16777216.0f, 16777216.0f, 16777220.0f, 2147483648.0f,
                                         -2147483648.0f, -1, -1, 0, -1, -16777220.0f};
    static const float want_u64[WIDE] = {0, 1, 16777216.0f, 16777216.0f, 16777220.0f, 2147483648.0f,
                                         2147483648.0f, 4294967296.0f, 9223372036854775808.0f,
                                         9223372036854775808.0f, 18446744073709551616.0f,
                                         18446744069414584320.0f};
    static const float want_i64[WIDE] = {0, 1, 16777216.0f, 16777216.0f, 16777220.0f, 2147483648.0f,
                                         2147483648.0f, 4294967296.0f, 9223372036854775808.0f,
                                         -9223372036854775808.0f, -1, -16777220.0f};
    dt_case c[] = {
        {"BOOL", 1, ALL8, NULL, NULL},  {"U8", 1, ALL8, NULL, NULL},    {"I8", 1, ALL8, NULL, NULL},
        {"F8_E5M2", 1, ALL8, NULL, NULL}, {"F8_E4M3", 1, ALL8, NULL, NULL},
        {"I16", 2, ALL16, NULL, NULL},  {"U16", 2, ALL16, NULL, NULL},  {"F16", 2, ALL16, NULL, NULL},
        {"BF16", 2, ALL16, NULL, NULL}, {"U32", 4, WIDE, NULL, NULL},   {"I32", 4, WIDE, NULL, NULL},
        {"U64", 8, WIDE, NULL, NULL},   {"I64", 8, WIDE, NULL, NULL},
    };
    const int k = (int)(sizeof c / sizeof c[0]);
    for (int i = 0; i < k; i++) {
        c[i].raw = malloc(c[i].size * (size_t)c[i].n);
        c[i].want = malloc(sizeof(float) * (size_t)c[i].n);
        assert_true(c[i].raw && c[i].want);
        for (int64_t v = 0; v < c[i].n; v++) {
            const char *d = c[i].dtype;
            uint64_t bits = c[i].n == WIDE ? wide[v] : (uint64_t)v;
            put_le(c[i].raw + c[i].size * (size_t)v, bits, c[i].size);
            float *w = &c[i].want[v];
            if (!strcmp(d, "BOOL")) *w = v != 0;
            else if (!strcmp(d, "U8") || !strcmp(d, "U16")) *w = (float)v;
            else if (!strcmp(d, "I8")) *w = (float)(v < 128 ? v : v - 256);
            else if (!strcmp(d, "I16")) *w = (float)(v < 32768 ? v : v - 65536);
            else if (!strcmp(d, "F8_E5M2")) *w = ref_minifloat((unsigned)v, 5, 2, 1);
            else if (!strcmp(d, "F8_E4M3")) *w = ref_minifloat((unsigned)v, 4, 3, 0);
            else if (!strcmp(d, "F16")) *w = ref_minifloat((unsigned)v, 5, 10, 1);
            else if (!strcmp(d, "BF16")) *w = ref_minifloat((unsigned)v, 8, 7, 1);
            else if (!strcmp(d, "U32")) *w = want_u32[v];
            else if (!strcmp(d, "I32")) *w = want_i32[v];
            else if (!strcmp(d, "U64")) *w = want_u64[v];
            else *w = want_i64[v];
        }
    }
    /* Spot checks of the references themselves. */
    assert_true(ref_minifloat(0x7E, 4, 3, 0) == 448.0f && isnan(ref_minifloat(0x7F, 4, 3, 0)));
    assert_true(ref_minifloat(0x01, 4, 3, 0) == 0x1p-9f && ref_minifloat(0x7B, 5, 2, 1) == 57344.0f);
    assert_true(ref_minifloat(0x7C, 5, 2, 1) == INFINITY && ref_minifloat(0x3C00, 5, 10, 1) == 1.0f);
    size_t len;
    unsigned char *blob = dt_file(c, k, &len);
    vikt_model *m = vt_model(1);
    vikt__file f;
    vikt__st st;
    static _Alignas(8) unsigned char chunk[VIKT__IO_CHUNK];
    vikt__file_memory(&f, m, "t", blob, len);
    assert_int_equal(vikt__st_open(&st, &f), VIKT_OK);
    for (int i = 0; i < k; i++) {
        vikt__st_tensor t;
        assert_true(vikt__st_find(&st, c[i].dtype, &t));
        assert_string_equal(vikt__dtype_name(t.dtype), c[i].dtype);
        float *got = malloc(sizeof(float) * (size_t)c[i].n);
        assert_non_null(got);
        assert_int_equal(vikt__st_read_f32(&st, &t, got, chunk), VIKT_OK);
        for (int64_t v = 0; v < c[i].n; v++)
            if (!same_float(got[v], c[i].want[v]))
                fail_msg("%s element %lld: %.9g, expected %.9g", c[i].dtype, (long long)v, got[v],
                         c[i].want[v]);
        free(got);
        free(c[i].raw);
        free(c[i].want);
    }
    vikt__st_close(&st);
    vikt__file_close(&f);
    vikt_model_destroy(m);
    free(blob);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32c_vectors),
        cmocka_unit_test(crc32c_every_table_entry),
        cmocka_unit_test(crc32c_chaining_and_alignment),
        cmocka_unit_test(json_grammar),
        cmocka_unit_test(json_nesting_limit),
        cmocka_unit_test(json_utf8),
        cmocka_unit_test(json_decode_in_place),
        cmocka_unit_test(json_integers),
        cmocka_unit_test(save_faults),
        cmocka_unit_test(load_faults),
        cmocka_unit_test(memory_source),
        cmocka_unit_test(kinds_are_matched),
        cmocka_unit_test(every_dtype_reads_as_float32),
    };
    return cmocka_run_group_tests_name("io", tests, NULL, NULL);
}
