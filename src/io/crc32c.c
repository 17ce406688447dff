/* CRC32C: the Castagnoli polynomial 0x1EDC6F41 (G. Castagnoli, S. Bräuer,
 * M. Herrmann, "Optimization of cyclic redundancy-check codes with 24 and 32
 * parity bits", IEEE Trans. Commun. 41(6), 1993), in its reflected form
 * 0x82F63B78, with initial value and final xor 0xFFFFFFFF — the CRC of iSCSI
 * (RFC 3720 §B.4), ext4 and btrfs. It detects every burst error up to 32 bits
 * and all errors of odd weight, better than the zlib CRC-32 on such data.
 *
 * Software only, slicing-by-8 (Kounavis and Berry, Intel 2005): eight bytes
 * per step through eight constant tables, a few times faster than one byte
 * per step. The tables are constants, so there is no initialisation and no
 * global state. Bytes are read one by one, so the result does not depend on
 * the host's byte order or on alignment. */
#include "io.h"

#include "crc32c_tables.h"

uint32_t vikt__crc32c(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc32c_table[7][lo & 0xFF] ^ crc32c_table[6][(lo >> 8) & 0xFF] ^
              crc32c_table[5][(lo >> 16) & 0xFF] ^ crc32c_table[4][lo >> 24] ^
              crc32c_table[3][p[4]] ^ crc32c_table[2][p[5]] ^ crc32c_table[1][p[6]] ^
              crc32c_table[0][p[7]];
    }
    for (; n > 0; n--, p++) crc = crc32c_table[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
    return ~crc;
}
