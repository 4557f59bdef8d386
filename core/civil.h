/* civil.h - UTC calendar dates from Unix seconds and back, in 64 bits, for
 * the whole project (export, the CLI's output and date arguments). Not
 * through time_t, gmtime_r or timegm: Debian 12's armhf has a 32-bit time_t,
 * which ends in January 2038. Proleptic Gregorian calendar, no leap seconds.
 * Internal (not in fieldvault.h). */
#ifndef FV_CIVIL_H
#define FV_CIVIL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t year; /* proleptic Gregorian: 0 is 1 BC */
    int month;    /* 1..12 */
    int day;      /* 1..31 */
    int hour, min, sec;
} fv_civil;

/* "YYYY-MM-DDTHH:MM:SSZ" and its terminating NUL. */
#define FV_TIME_ISO_BYTES 21

/* The UTC date and time of `t` seconds since 1970-01-01T00:00:00Z. Defined
 * for every int64_t. */
void fv_civil_from_unix(fv_civil *c, int64_t t);

/* Days from 1970-01-01 to y-m-d (negative before it). m is 1..12, d 1..31,
 * |y| below 2^40; the date is not checked (2023-02-31 is 2023-03-03). */
int64_t fv_days_from_civil(int64_t y, int m, int d);

/* `t` as "YYYY-MM-DDTHH:MM:SSZ" into out. 0, or -1 and "?" outside the
 * years 0000 to 9999 (which no four-digit field can show). */
int fv_time_iso(char out[FV_TIME_ISO_BYTES], int64_t t);

#endif
