/* PCG32 (M. E. O'Neill, "PCG: A Family of Simple Fast Space-Efficient
 * Statistically Good Algorithms for Random Number Generation", 2014):
 * integer-only, so the same seed gives the same stream everywhere. */
#include "vikt_internal.h"

#include <math.h>

#define PCG_MULT 6364136223846793005ULL

void vikt__rng_seed(vikt__rng *r, uint64_t seed) {
    r->state = 0;
    r->inc = (0xda3e39cb94b95bdbULL << 1) | 1u;
    vikt__rng_u32(r);
    r->state += seed;
    vikt__rng_u32(r);
}

uint32_t vikt__rng_u32(vikt__rng *r) {
    uint64_t old = r->state;
    r->state = old * PCG_MULT + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31u));
}

float vikt__rng_uniform(vikt__rng *r) {
    return (float)(vikt__rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

/* Box–Muller in double precision, rounded to float: libm differences between
 * platforms are far below float resolution. One normal per two draws keeps
 * the generator stateless beyond PCG's state. */
float vikt__rng_normal(vikt__rng *r) {
    double u1 = ((double)vikt__rng_u32(r) + 1.0) * (1.0 / 4294967296.0); /* (0,1] */
    double u2 = (double)vikt__rng_u32(r) * (1.0 / 4294967296.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Rejection sampling: draws below the largest multiple of bound are taken
 * modulo bound, so every value is equally likely (plain modulo would favour
 * small values). 32-bit draws suffice below 2^32; larger bounds use two. */
uint64_t vikt__rng_below(vikt__rng *r, uint64_t bound) {
    if (bound <= 0xffffffffULL) {
        uint32_t b = (uint32_t)bound, threshold = (uint32_t)(-b) % b;
        for (;;) {
            uint32_t x = vikt__rng_u32(r);
            if (x >= threshold) return x % b;
        }
    }
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t x = ((uint64_t)vikt__rng_u32(r) << 32) | vikt__rng_u32(r);
        if (x >= threshold) return x % bound;
    }
}
