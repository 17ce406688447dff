#!/bin/sh
# Make sure what `make check` needs is present. As root with apt-get, install
# what is missing; otherwise say in one line what to install and fail.
# Needed: cmocka (tests). Wanted: g++ (the C++ header check; skipped if absent).
CC=${CC:-cc}

have_cmocka() {
    printf '#include <stdarg.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <setjmp.h>\n#include <cmocka.h>\nint main(void){return 0;}\n' |
        $CC -x c - -lcmocka -o /dev/null >/dev/null 2>&1
}

can_apt() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
    echo "check-deps: installing $* with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >/dev/null
}

if ! have_cmocka; then
    if can_apt; then
        apt_install libcmocka-dev || { echo "check-deps: apt-get install libcmocka-dev failed"; exit 1; }
    fi
    have_cmocka || { echo "check-deps: the tests need cmocka: apt-get install libcmocka-dev"; exit 1; }
fi
if ! command -v g++ >/dev/null 2>&1 && can_apt; then
    apt_install g++ || echo "check-deps: could not install g++; the C++ header check will be skipped"
fi
exit 0
