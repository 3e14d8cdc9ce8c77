/*
 * metering/pg_keys.h — the PostgreSQL advisory lock keys of PAR's fleet
 * metering ("PAR" in ASCII, then a role). Internal to metering/pg_*.c.
 */
#ifndef PAR_METERING_PG_KEYS_H
#define PAR_METERING_PG_KEYS_H

#define PAR_PG_LOCK_SCHEMA "5521746000" /* creating the tables, once at a time */
#define PAR_PG_LOCK_SHIP "5521746001"   /* shipping transactions, in seq order */
#define PAR_PG_LOCK_EXPORT "5521746002" /* held by the node that exports (a session lock) */

#endif
