#!/bin/sh
# What `make check-neon` needs: an aarch64 cross compiler, qemu-user, and
# cmocka built for arm64 (Debian multiarch: libcmocka-dev:arm64 after
# `dpkg --add-architecture arm64`). As root with apt-get, install what is
# missing; otherwise say in one line what to install and fail.
T=${1:-aarch64-linux-gnu}

have_all() {
    command -v "$T-gcc" >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1 &&
        printf '#include <stdarg.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <setjmp.h>\n#include <cmocka.h>\nint main(void){return 0;}\n' |
        "$T-gcc" -x c - -lcmocka -o /dev/null >/dev/null 2>&1
}

have_all && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "check-neon: installing gcc-$T, libc6-dev-arm64-cross, qemu-user, libcmocka-dev:arm64 with apt-get"
    {
        dpkg --add-architecture arm64 &&
            apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "gcc-$T" libc6-dev-arm64-cross \
                qemu-user libcmocka-dev:arm64
    } >/dev/null || { echo "check-neon: apt-get install failed"; exit 1; }
fi
have_all || {
    echo "check-neon: needs gcc-$T, libc6-dev-arm64-cross, qemu-user and libcmocka-dev:arm64"
    exit 1
}
exit 0
