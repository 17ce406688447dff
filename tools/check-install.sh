#!/bin/sh
# Install vikt into throw-away places and use it the way a consumer would:
#   1. `make install PREFIX=<tmp>` into an empty prefix: exactly the header,
#      the archive, vikt.pc and the vikt tool appear, vikt.pc points at
#      <tmp>, and the installed `vikt inspect` reads a fixture;
#   2. a small C program outside the source tree, built only with
#      `pkg-config --cflags --libs vikt` (PKG_CONFIG_PATH=<tmp>/lib/pkgconfig),
#      trains y = 2x + 1 with SGD and checks the result;
#   3. `make uninstall PREFIX=<tmp>` removes every installed file;
#   4. `make install DESTDIR=<stage> prefix=/usr`: files land under
#      <stage>/usr/..., vikt.pc names /usr (not the stage), nothing is written
#      outside the stage, the consumer builds against the stage through
#      PKG_CONFIG_SYSROOT_DIR, and `make uninstall` with the same variables
#      empties it.
# Run from the repository root (make check-install). MAKE and CC are honoured.
# Prints one closing line: "check-install: PASS ..." or "check-install: FAIL: ...".
MAKE=${MAKE:-make}
CC=${CC:-cc}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}

# The inner makes must see only the variables given below: drop overrides
# inherited from an outer `make check-install prefix=...` (MAKEFLAGS) and
# install locations from the environment, which the Makefile's ?= would take.
unset MAKEFLAGS MFLAGS MAKELEVEL PREFIX prefix exec_prefix libdir includedir bindir DESTDIR

fail() {
    echo "check-install: FAIL: $*"
    exit 1
}

if [ ! -f include/vikt.h ] || [ ! -f pkgconfig/vikt.pc.in ]; then
    fail "run me from the repository root"
fi
command -v "$PKG_CONFIG" >/dev/null 2>&1 || fail "pkg-config is not installed (apt-get install pkg-config)"

tmp=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT INT TERM
prefix=$tmp/prefix
stage=$tmp/stage
mkdir "$prefix" "$stage" "$tmp/consumer"

version=$(sed -n 's/^VERSION *:= *//p' Makefile)
[ -n "$version" ] || fail "no VERSION in the Makefile"

# Every regular file below $1, relative to it, sorted.
files_under() { (cd "$1" && find . -type f | sed 's|^\./||' | LC_ALL=C sort); }

expected="bin/vikt
include/vikt.h
lib/libvikt.a
lib/pkgconfig/vikt.pc"

# --- the consumer --------------------------------------------------------------
cat > "$tmp/consumer/consumer.c" <<'EOF'
/* A program that knows vikt only through pkg-config: learn y = 2x + 1. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <vikt.h>

int main(void) {
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", VIKT_VERSION_MAJOR, VIKT_VERSION_MINOR,
             VIKT_VERSION_PATCH);
    if (strcmp(vikt_version(), want) != 0) {
        fprintf(stderr, "consumer: vikt_version() %s, header %s\n", vikt_version(), want);
        return 1;
    }
    float xs[4] = {0, 1, 2, 3}, ys[4] = {1, 3, 5, 7};
    vikt_model *m;
    vikt_optimizer *opt;
    if (vikt_model_create(NULL, 42, &m) != VIKT_OK) return 1;
    vikt_tensor *w = vikt_param(m, "w", 2, (int64_t[]){1, 1}, VIKT_INIT_ZEROS);
    vikt_tensor *b = vikt_param(m, "b", 1, (int64_t[]){1}, VIKT_INIT_ZEROS);
    if (vikt_sgd_create(m, 0.05f, &opt) != VIKT_OK) return 1;
    float loss = 0;
    for (int step = 0; step < 400; step++) {
        vikt_step_begin(m);
        vikt_zero_grad(m);
        vikt_tensor *x = vikt_input(m, 2, (int64_t[]){4, 1}, xs);
        vikt_tensor *y = vikt_input(m, 2, (int64_t[]){4, 1}, ys);
        vikt_tensor *l = vikt_mse_loss(m, vikt_add(m, vikt_matmul(m, x, w), b), y);
        vikt_backward(m, l);
        vikt_optimizer_step(opt);
        if (l) loss = vikt_tensor_data(l)[0];
    }
    int rc = 0;
    if (vikt_model_errcode(m) != VIKT_OK) {
        fprintf(stderr, "consumer: %s\n", vikt_model_errmsg(m));
        rc = 1;
    } else {
        float wv = vikt_tensor_data(w)[0], bv = vikt_tensor_data(b)[0];
        printf("consumer: vikt %s, 400 SGD steps: w = %.4f, b = %.4f, loss = %.2g\n",
               vikt_version(), wv, bv, loss);
        if (!(fabsf(wv - 2.0f) < 0.01f && fabsf(bv - 1.0f) < 0.01f)) {
            fprintf(stderr, "consumer: expected w = 2, b = 1\n");
            rc = 1;
        }
    }
    vikt_optimizer_destroy(opt);
    vikt_model_destroy(m);
    return rc;
}
EOF

# build_and_run LABEL: compile consumer.c with $flags (set by the caller) in a
# directory outside the source tree, then run it.
build_and_run() {
    rm -f "$tmp/consumer/consumer"
    # $flags is a list of words from pkg-config: split on purpose.
    # shellcheck disable=SC2086
    (cd "$tmp/consumer" &&
        $CC -std=c11 -Wall -Wextra -Werror consumer.c $flags -o consumer) >"$tmp/cc.log" 2>&1 ||
        { cat "$tmp/cc.log"; fail "$1: the consumer does not build with: $flags"; }
    "$tmp/consumer/consumer" || fail "$1: the consumer failed"
}

# --- 1. install into an empty prefix ------------------------------------------
$MAKE --no-print-directory install PREFIX="$prefix" >"$tmp/make.log" 2>&1 ||
    { cat "$tmp/make.log"; fail "make install PREFIX=$prefix"; }
got=$(files_under "$prefix")
[ "$got" = "$expected" ] || fail "make install PREFIX= installed:
$got
expected:
$expected"
pc=$prefix/lib/pkgconfig/vikt.pc
grep -q '@[a-zA-Z_]*@' "$pc" && fail "vikt.pc has unsubstituted @...@: $(grep '@' "$pc")"
grep -qx "prefix=$prefix" "$pc" || fail "vikt.pc: prefix is not $prefix"
cmp -s include/vikt.h "$prefix/include/vikt.h" || fail "the installed vikt.h differs from include/vikt.h"
[ -x "$prefix/bin/vikt" ] || fail "the installed vikt is not executable"
tool_version=$("$prefix/bin/vikt" --version) || fail "installed vikt --version failed"
[ "$tool_version" = "vikt $version" ] || fail "installed vikt --version says '$tool_version', Makefile VERSION $version"
fixture=test/fixtures/safetensors/golden_mlp_f32.safetensors
"$prefix/bin/vikt" inspect --stats "$fixture" >"$tmp/inspect.out" 2>&1 ||
    { cat "$tmp/inspect.out"; fail "installed vikt inspect $fixture failed"; }
grep -q '^total: 4 tensors, 39 parameters' "$tmp/inspect.out" ||
    { cat "$tmp/inspect.out"; fail "installed vikt inspect printed no total of 4 tensors, 39 parameters"; }
"$prefix/bin/vikt" inspect test/fixtures/safetensors/bad_utf8.safetensors >/dev/null 2>&1
[ $? -eq 2 ] || fail "installed vikt inspect of a malformed file did not exit 2"
echo "check-install: make install PREFIX=<tmp> installed exactly: $(echo "$expected" | tr '\n' ' ')"
echo "check-install: the installed vikt inspect read $fixture (4 tensors, 39 parameters) and rejected a malformed file"

# --- 2. a consumer through pkg-config -------------------------------------------
PKG_CONFIG_PATH=$prefix/lib/pkgconfig
PKG_CONFIG_LIBDIR=$prefix/lib/pkgconfig # only ours: a system vikt.pc must not win
export PKG_CONFIG_PATH PKG_CONFIG_LIBDIR
modversion=$($PKG_CONFIG --modversion vikt) || fail "pkg-config does not find vikt"
[ "$modversion" = "$version" ] || fail "pkg-config --modversion vikt is $modversion, Makefile VERSION $version"
flags=$($PKG_CONFIG --cflags --libs vikt) || fail "pkg-config --cflags --libs vikt"
# shellcheck disable=SC2086,SC2116 # one space between words, none at the end
flags=$(echo $flags)
case " $flags " in
*" -L$prefix/lib "*) ;;
*) fail "pkg-config --libs does not name $prefix/lib: $flags" ;;
esac
echo "check-install: pkg-config --cflags --libs vikt: $flags"
build_and_run "PREFIX install"

# --- 3. uninstall -----------------------------------------------------------------
$MAKE --no-print-directory uninstall PREFIX="$prefix" >"$tmp/make.log" 2>&1 ||
    { cat "$tmp/make.log"; fail "make uninstall PREFIX=$prefix"; }
left=$(files_under "$prefix")
[ -z "$left" ] || fail "make uninstall left files behind: $left"
echo "check-install: make uninstall PREFIX=<tmp> removed every installed file"

# --- 4. DESTDIR staging with prefix=/usr ----------------------------------------
before=$(ls -d /usr/include/vikt.h /usr/lib/libvikt.a /usr/lib/pkgconfig/vikt.pc /usr/bin/vikt 2>/dev/null)
$MAKE --no-print-directory install DESTDIR="$stage" prefix=/usr >"$tmp/make.log" 2>&1 ||
    { cat "$tmp/make.log"; fail "make install DESTDIR=$stage prefix=/usr"; }
got=$(files_under "$stage")
want=$(echo "$expected" | sed 's|^|usr/|')
[ "$got" = "$want" ] || fail "make install DESTDIR= prefix=/usr staged:
$got
expected:
$want"
after=$(ls -d /usr/include/vikt.h /usr/lib/libvikt.a /usr/lib/pkgconfig/vikt.pc /usr/bin/vikt 2>/dev/null)
[ "$before" = "$after" ] || fail "make install DESTDIR=... wrote outside the stage: $after"
pc=$stage/usr/lib/pkgconfig/vikt.pc
grep -q "$stage" "$pc" && fail "vikt.pc names the stage directory: $(grep "$stage" "$pc")"
for line in prefix=/usr libdir=/usr/lib includedir=/usr/include; do
    grep -qx "$line" "$pc" || fail "staged vikt.pc lacks $line"
done
echo "check-install: make install DESTDIR=<stage> prefix=/usr staged under <stage>/usr, vikt.pc names /usr"

# The staged tree as a sysroot: pkg-config prefixes -I/-L with the stage. /usr
# paths are system paths, which pkg-config would otherwise drop.
PKG_CONFIG_PATH=$stage/usr/lib/pkgconfig
PKG_CONFIG_LIBDIR=$stage/usr/lib/pkgconfig
PKG_CONFIG_SYSROOT_DIR=$stage
PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1
PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
export PKG_CONFIG_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR \
    PKG_CONFIG_ALLOW_SYSTEM_CFLAGS PKG_CONFIG_ALLOW_SYSTEM_LIBS
flags=$($PKG_CONFIG --cflags --libs vikt) || fail "pkg-config (sysroot) --cflags --libs vikt"
# shellcheck disable=SC2086,SC2116
flags=$(echo $flags)
case " $flags " in
*" -I$stage/usr/include "*"-L$stage/usr/lib "*) ;;
*) fail "pkg-config with PKG_CONFIG_SYSROOT_DIR gave: $flags" ;;
esac
build_and_run "DESTDIR install"

$MAKE --no-print-directory uninstall DESTDIR="$stage" prefix=/usr >"$tmp/make.log" 2>&1 ||
    { cat "$tmp/make.log"; fail "make uninstall DESTDIR=$stage prefix=/usr"; }
left=$(files_under "$stage")
[ -z "$left" ] || fail "make uninstall DESTDIR= left files behind: $left"
echo "check-install: make uninstall DESTDIR=<stage> prefix=/usr removed every staged file"

echo "check-install: PASS (PREFIX and DESTDIR installs, pkg-config consumer trained y = 2x + 1, vikt tool runs, uninstall clean)"
