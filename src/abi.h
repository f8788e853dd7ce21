/*
 * abi.h - reading a struct a caller passes in, by the size the caller
 * compiled it with (docs/abi.md).
 *
 * Fields of skipq_enqueue_opts and skipq_job_spec are only ever added at
 * the end. A caller built against an older skipq.h passes a shorter
 * struct: the library reads its bytes and no more, and takes every field
 * past them as 0, the default. A caller built against a newer skipq.h
 * passes a longer one: the fields this library does not know must be 0
 * (what the INIT macro leaves them), else the call is refused rather
 * than run without them.
 *
 * Header-only and needing nothing but skipq.h, so that
 * tests/unit/test_abi.c compiles this very code against a copy of skipq.h
 * whose structs have grown, and shows that an old caller's struct is
 * never read past its end.
 */
#ifndef SKIPQ_ABI_H
#define SKIPQ_ABI_H

#include "skipq.h"

#include <stddef.h>
#include <string.h>

typedef enum skipq__in_rc {
    SKIPQ__IN_OK = 0,
    SKIPQ__IN_BAD_SIZE = 1, /* smaller than the first release's struct */
    SKIPQ__IN_UNKNOWN = 2,  /* sets a field this library does not know */
} skipq__in_rc;

/* No struct passed in is anywhere near this: a larger size is a struct
 * that was never initialized, and is not read at all. */
#define SKIPQ__IN_MAX 4096

/* The sizes of the first release's structs: every caller's is at least
 * this (fields are only added after these). */
#define SKIPQ__ENQUEUE_OPTS_MIN (offsetof(skipq_enqueue_opts, max_payload) + sizeof(size_t))
#define SKIPQ__JOB_SPEC_MIN (offsetof(skipq_job_spec, payload_json) + sizeof(const char *))

/* dst (dst_size bytes, the library's struct) from src (src_size bytes,
 * the caller's): the common bytes copied, the rest of dst zeroed. */
static inline skipq__in_rc
skipq__struct_in(void *dst, size_t dst_size, const void *src, size_t src_size,
                 size_t min_size)
{
    const unsigned char *s = (const unsigned char *)src;

    memset(dst, 0, dst_size);
    if (src_size < min_size || src_size > SKIPQ__IN_MAX)
        return SKIPQ__IN_BAD_SIZE;
    memcpy(dst, src, src_size < dst_size ? src_size : dst_size);
    for (size_t i = dst_size; i < src_size; i++)
        if (s[i] != 0)
            return SKIPQ__IN_UNKNOWN;
    return SKIPQ__IN_OK;
}

/* The caller's options (never NULL here) as this library's struct; its
 * size field becomes this library's size. */
static inline skipq__in_rc
skipq__enqueue_opts_in(const skipq_enqueue_opts *in, skipq_enqueue_opts *out)
{
    skipq__in_rc rc = skipq__struct_in(out, sizeof *out, in, in->size,
                                       SKIPQ__ENQUEUE_OPTS_MIN);
    out->size = sizeof *out;
    return rc;
}

/* Element i of the caller's array of specs, stride bytes apart. */
static inline skipq__in_rc
skipq__job_spec_in(const skipq_job_spec *jobs, size_t stride, size_t i, skipq_job_spec *out)
{
    return skipq__struct_in(out, sizeof *out, (const unsigned char *)jobs + i * stride,
                            stride, SKIPQ__JOB_SPEC_MIN);
}

#endif /* SKIPQ_ABI_H */
