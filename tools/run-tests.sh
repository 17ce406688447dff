#!/bin/sh
# Run each test program given, then print one closing line:
#   check: N passed, M failed
# VIKT_TEST_WRAPPER (e.g. "valgrind -q ..." or qemu) is put in front of each
# program. VIKT_TEST_ISAS (e.g. "scalar avx2 avx512") runs every program once
# per GEMM kernel with VIKT_ISA set to it; unset, once as the environment is.
passed=0
failed=0
failures=""
for isa in ${VIKT_TEST_ISAS:-default}; do
    for t in "$@"; do
        if [ "$isa" = default ]; then
            echo "== $t"
            ${VIKT_TEST_WRAPPER:-} "$t"
        else
            echo "== $t (VIKT_ISA=$isa)"
            VIKT_ISA=$isa ${VIKT_TEST_WRAPPER:-} "$t"
        fi
        if [ $? -eq 0 ]; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
            if [ "$isa" = default ]; then failures="$failures $t"; else failures="$failures $t[$isa]"; fi
        fi
    done
done
[ -n "$failures" ] && echo "failed programs:$failures"
echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
