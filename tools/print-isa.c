/* Print the GEMM kernel vikt uses here: `VIKT_ISA=avx512 print-isa` prints
 * avx512 only if this build has that kernel and the CPU can run it, which is
 * how `make run-tests` finds the kernels to run the suite with. */
#include <stdio.h>

#include "vikt.h"

int main(void) {
    puts(vikt_gemm_isa());
    return 0;
}
