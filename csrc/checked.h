/* checked.h — size arithmetic that cannot wrap, for the drivers (cells.c, sequence.c, pack.c,
 * blocks.c). Every product or sum of sizes that becomes an allocation size, a buffer offset or
 * a loop bound is computed with these: a batch of 2^56 stride-0 rows, or a packed size past
 * SIZE_MAX, must not become a short allocation that the kernels then overrun.
 *
 * Usage: thread one flag through a group of computations and test it once before using any of
 * the results:
 *     int overflow = 0;
 *     const size_t n = fc_mul(B, fc_add(I, P, &overflow), &overflow);
 *     if (overflow) return FC_ERR_SIZE;
 * On overflow a result is 0 (never a wrapped value) and *overflow is set; it is never cleared.
 */
#ifndef FASTCELLS_CHECKED_H
#define FASTCELLS_CHECKED_H

#include <stddef.h>

#include "fastcells.h"

/* pack.c: the bytes fc_pack allocates for a [k, gates*units] kernel in panels of pw columns,
 * or FC_ERR_SIZE (a product overflows) / FC_ERR_ARG (gates or pw out of range). */
fc_status fc_packed_bytes(size_t k, size_t gates, size_t units, size_t elem, size_t pw,
                          size_t *bytes);

static inline size_t fc_mul(size_t a, size_t b, int *overflow)
{
    size_t product;
    if (__builtin_mul_overflow(a, b, &product)) {
        *overflow = 1;
        return 0;
    }
    return product;
}

static inline size_t fc_add(size_t a, size_t b, int *overflow)
{
    size_t sum;
    if (__builtin_add_overflow(a, b, &sum)) {
        *overflow = 1;
        return 0;
    }
    return sum;
}

static inline size_t fc_mul3(size_t a, size_t b, size_t c, int *overflow)
{
    return fc_mul(fc_mul(a, b, overflow), c, overflow);
}

/* a rounded up to a multiple of m >= 1 */
static inline size_t fc_round_up_checked(size_t a, size_t m, int *overflow)
{
    return fc_mul((a / m) + (a % m != 0), m, overflow);
}

/* Saturating forms, for counts that only choose a thread count or a chunk length (FLOPs): an
 * overflow means "very large", which chooses the same as any large value. */
static inline size_t fc_sat_mul(size_t a, size_t b)
{
    size_t product;
    return __builtin_mul_overflow(a, b, &product) ? (size_t)-1 : product;
}

static inline size_t fc_sat_add(size_t a, size_t b)
{
    size_t sum;
    return __builtin_add_overflow(a, b, &sum) ? (size_t)-1 : sum;
}

/* floor(n * part / parts) for part <= parts, without forming n * part: the bound between
 * shares part-1 and part when [0, n) is cut into `parts` contiguous shares. With
 * n = q*parts + r it is q*part + floor(r*part/parts), the same value exactly. */
static inline size_t fc_share_bound(size_t n, size_t part, size_t parts)
{
    return n / parts * part + n % parts * part / parts;
}

#endif /* FASTCELLS_CHECKED_H */
