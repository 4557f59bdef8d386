/* civil.c - UTC calendar dates in 64 bits (civil.h). H. Hinnant's
 * days_from_civil / civil_from_days: eras of 400 years (146097 days) from
 * 0000-03-01, so that the leap day is the last day of a year. */
#include <stdio.h>

#include "civil.h"

void fv_civil_from_unix(fv_civil *c, int64_t t)
{
    /* Floor division: the second before 1970 is 1969-12-31T23:59:59. */
    int64_t days = t / 86400, secs = t % 86400, era, doe, yoe, doy, mp;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    days += 719468; /* from 0000-03-01 */
    era = (days >= 0 ? days : days - 146096) / 146097;
    doe = days - era * 146097;                                     /* 0..146096 */
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;   /* 0..399 */
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                 /* 0..365 */
    mp = (5 * doy + 2) / 153;                                      /* 0 is March */
    c->year = yoe + era * 400 + (mp >= 10);
    c->month = (int)(mp < 10 ? mp + 3 : mp - 9);
    c->day = (int)(doy - (153 * mp + 2) / 5 + 1);
    c->hour = (int)(secs / 3600);
    c->min = (int)(secs / 60 % 60);
    c->sec = (int)(secs % 60);
}

int64_t fv_days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;                                           /* 0..399 */
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;          /* 0..365 */
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;                   /* 0..146096 */
    return era * 146097 + doe - 719468;
}

int fv_time_iso(char out[FV_TIME_ISO_BYTES], int64_t t)
{
    fv_civil c;
    fv_civil_from_unix(&c, t);
    if (c.year < 0 || c.year > 9999) {
        snprintf(out, FV_TIME_ISO_BYTES, "?");
        return -1;
    }
    snprintf(out, FV_TIME_ISO_BYTES, "%04d-%02d-%02dT%02d:%02d:%02dZ", (int)c.year,
             c.month, c.day, c.hour, c.min, c.sec);
    return 0;
}
