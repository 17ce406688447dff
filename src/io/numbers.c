/* Numbers in metadata text, written and read exactly and without the C
 * library's locale: printf's %g and %a and strtod/sscanf use the decimal
 * point of LC_NUMERIC, so a program that set a comma-decimal locale would
 * write "0,5" and misread "0.5". Doubles are spelled in C99's hexadecimal
 * form built from their bits, which round-trips every finite value. */
#include "io.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void vikt__put_double(double v, char out[VIKT__NUM_MAX]) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    unsigned e = (unsigned)(bits >> 52) & 0x7FFu;
    uint64_t frac = bits & ((UINT64_C(1) << 52) - 1);
    const char *sign = bits >> 63 ? "-" : "";
    if (e == 0x7FF) {
        snprintf(out, VIKT__NUM_MAX, "%s%s", frac ? "" : sign, frac ? "nan" : "inf");
        return;
    }
    char digits[16];
    snprintf(digits, sizeof digits, "%013llx", (unsigned long long)frac);
    for (int i = 12; i >= 0 && digits[i] == '0'; i--) digits[i] = '\0';
    int exp = e ? (int)e - 1023 : frac ? -1022 : 0;
    snprintf(out, VIKT__NUM_MAX, "%s0x%d%s%sp%+d", sign, e != 0, digits[0] ? "." : "", digits,
             exp);
}

int vikt__hex_digit(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Parse the form, then demand that writing the value gives back the very
 * text: that refuses every other spelling (upper case, padding, a
 * denormalized mantissa) without a rule for each. */
int vikt__get_double(const char *s, double *v) {
    const char *p = s + (*s == '-');
    if (p[0] != '0' || p[1] != 'x' || (p[2] != '0' && p[2] != '1')) return 0;
    uint64_t mant = (uint64_t)(p[2] - '0');
    int digits = 0;
    p += 3;
    if (*p == '.')
        for (p++; vikt__hex_digit(*p) >= 0 && digits < 13; p++, digits++)
            mant = mant << 4 | (uint64_t)vikt__hex_digit(*p);
    mant <<= 4 * (13 - digits);
    if (*p++ != 'p' || (*p != '+' && *p != '-')) return 0;
    int negative_exp = *p++ == '-', exp = 0, exp_digits = 0;
    for (; *p >= '0' && *p <= '9' && exp_digits < 5; p++, exp_digits++) exp = exp * 10 + (*p - '0');
    if (*p || !exp_digits) return 0;
    double x = ldexp((double)mant, (negative_exp ? -exp : exp) - 52);
    if (*s == '-') x = -x;
    char again[VIKT__NUM_MAX];
    vikt__put_double(x, again);
    if (!isfinite(x) || strcmp(again, s) != 0) return 0;
    *v = x;
    return 1;
}
