#!/bin/sh
# Run each test program given, then print one closing line:
#   check: N passed, M failed
# VIKT_TEST_WRAPPER (e.g. "valgrind -q ...") is put in front of each program.
passed=0
failed=0
failures=""
for t in "$@"; do
    echo "== $t"
    if ${VIKT_TEST_WRAPPER:-} "$t"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures="$failures $t"
    fi
done
[ -n "$failures" ] && echo "failed programs:$failures"
echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
