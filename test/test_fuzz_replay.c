/* The fuzz target (test/fuzz/fuzz_safetensors.c) over its seed corpus and
 * every safetensors fixture, in every normal test run: the fuzzer's checks
 * without needing clang. With file arguments it replays those instead, e.g.
 * a crash the fuzzer found:  build/test/test_fuzz_replay crash-1234 */
#define _POSIX_C_SOURCE 200809L

#include "support.h"

#include "fuzz/fuzz_safetensors.c"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    /* An exactly sized copy, so reading one byte too far is caught by
     * valgrind and ASan. */
    uint8_t *exact = malloc(got ? got : 1);
    memcpy(exact, buf, got);
    free(buf);
    LLVMFuzzerTestOneInput(exact, got);
    free(exact);
    return 1;
}

static int replay_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) fail_msg("cannot open %s (run from the repository root)", dir);
    int n = 0;
    char path[1024];
    for (struct dirent *e; (e = readdir(d));) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) n += replay_file(path);
    }
    closedir(d);
    return n;
}

static void seed_corpus(void **state) {
    (void)state;
    int n = replay_dir("test/fuzz/corpus");
    print_message("replayed %d seeds\n", n);
    assert_true(n >= 10);
}

static void fixtures(void **state) {
    (void)state;
    int n = replay_dir("test/fixtures/safetensors");
    print_message("replayed %d fixtures\n", n);
    assert_true(n >= 50);
}

static uint8_t *read_seed(const char *name, size_t *n) {
    char path[256];
    snprintf(path, sizeof path, "test/fuzz/corpus/%s", name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    uint8_t *buf = malloc(65536);
    *n = fread(buf, 1, 65536, f);
    fclose(f);
    assert_true(*n > 100 && *n < 65536);
    return buf;
}

/* Every prefix of a valid file (each truncation point) and every single
 * bit flip of its header: the fuzzer's first mutations, done exhaustively. */
/* VIKT_TEST_QUICK=1 (make check-neon, under qemu, 20-50x slower) takes
 * every 7th length and byte instead of all of them. */
static size_t sweep_step(void) {
    const char *q = getenv("VIKT_TEST_QUICK");
    return q && *q == '1' ? 7 : 1;
}

static void mutate_exhaustively(const char *name) {
    size_t n, step = sweep_step();
    uint8_t *buf = read_seed(name, &n);
    for (size_t len = 0; len <= n; len += step) {
        uint8_t *exact = malloc(len ? len : 1);
        memcpy(exact, buf, len);
        LLVMFuzzerTestOneInput(exact, len);
        free(exact);
    }
    size_t header = 8 + (size_t)buf[0] + ((size_t)buf[1] << 8);
    for (size_t i = 0; i < header && i < n; i += step)
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            LLVMFuzzerTestOneInput(buf, n);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    free(buf);
}

static void truncations_and_bit_flips(void **state) {
    (void)state;
    mutate_exhaustively("vikt_style");
    mutate_exhaustively("checkpoint_adam");
    mutate_exhaustively("lora_adapter");
}

/* The checkpoint and adapter seeds load as such into the target's models,
 * so the fuzzer starts from inputs that reach every metadata parser. */
static void seeds_reach_the_parsers(void **state) {
    (void)state;
    fz_count c = {0, 0};
    size_t n;
    uint8_t *buf = read_seed("checkpoint_adam", &n);
    assert_int_equal(checkpoint(buf, n, &c), VIKT_OK);
    free(buf);
    buf = read_seed("lora_adapter", &n);
    assert_int_equal(adapters(buf, n, &c), 1);
    free(buf);
    buf = read_seed("lora_peft", &n);
    assert_int_equal(adapters(buf, n, &c), 1);
    free(buf);
    assert_int_equal(c.live, 0);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            if (!replay_file(argv[i])) {
                fprintf(stderr, "cannot read %s\n", argv[i]);
                return 1;
            }
            printf("replayed %s\n", argv[i]);
        }
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seed_corpus),
        cmocka_unit_test(fixtures),
        cmocka_unit_test(truncations_and_bit_flips),
        cmocka_unit_test(seeds_reach_the_parsers),
    };
    return cmocka_run_group_tests_name("fuzz_replay", tests, NULL, NULL);
}
