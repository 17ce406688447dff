#!/bin/sh
# The public header must compile alone as C11 and as C++ with every warning
# an error.
CC=${1:-cc}
STRICT="-Wall -Wextra -pedantic -Werror"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
printf '#include "vikt.h"\nint main(void) { return vikt_version() == 0; }\n' > "$tmp/h.c"
$CC -std=c11 $STRICT -Iinclude -fsyntax-only "$tmp/h.c" || { echo "check-header: C11 failed"; exit 1; }
echo "check-header: vikt.h compiles alone as C11 -pedantic -Werror"
if command -v g++ >/dev/null 2>&1; then
    cp "$tmp/h.c" "$tmp/h.cpp"
    for std in c++11 c++17; do
        g++ -std=$std $STRICT -Iinclude -fsyntax-only "$tmp/h.cpp" || { echo "check-header: $std failed"; exit 1; }
    done
    echo "check-header: vikt.h compiles alone as C++11 and C++17 -pedantic -Werror"
else
    echo "check-header: C++ check skipped: g++ is not installed"
fi
