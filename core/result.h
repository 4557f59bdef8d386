/*
 * result.h - the output structs a caller allocates (fv_sync_result,
 * fv_verify_report, fv_bundle_stats): each starts with its size_t size,
 * which its _INIT macro sets, so that the struct can grow by appended
 * fields (docs/API.md, "Versioned option structs"). Internal.
 */
#ifndef FV_RESULT_H
#define FV_RESULT_H

#include <stddef.h>
#include <string.h>

/* The size a caller's struct at `out` says it has. */
static inline size_t fv_result_size(const void *out)
{
    size_t n;
    memcpy(&n, out, sizeof n);
    return n;
}

/* Non-zero if the caller's struct at `out` covers at least `min` bytes
 * (the struct as it was at 1.0): a smaller size is a struct not set up
 * with its _INIT macro. */
static inline int fv_result_ok(const void *out, size_t min)
{
    return fv_result_size(out) >= min;
}

/* Copies the library's `full` struct of `full_size` bytes into the
 * caller's `out`, as far as the caller's size covers; out's size stays. A
 * larger caller struct (a newer header) keeps its further fields as they
 * were. */
static inline void fv_result_put(void *out, const void *full, size_t full_size)
{
    size_t n = fv_result_size(out);
    if (n > full_size)
        n = full_size;
    memcpy((unsigned char *)out + sizeof(size_t),
           (const unsigned char *)full + sizeof(size_t), n - sizeof(size_t));
}

/* The size of struct `type` at 1.0: up to the end of its last field then. */
#define FV_RESULT_MIN(type, last) \
    (offsetof(type, last) + sizeof(((type *)0)->last))

#endif
