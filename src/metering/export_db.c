/*
 * metering/export_db.c — the acknowledgement loops of the Stripe exporter,
 * written once over the database operations of export_db.h (SQLite or
 * PostgreSQL). Exporter thread only.
 */
#include "metering/export_db.h"

#include <par/par.h>

int par__export_ack(const par_export_db_ops_t *ops, void *db, const char *exporter,
                    const par_store_ack_t *acks, size_t n, par_buf_t *err)
{
    if (n == 0)
        return PAR_OK;
    int rc = ops->begin(db, err);
    if (rc != PAR_OK)
        return rc;
    int64_t exported = 0, dead = 0, last = 0;
    for (size_t i = 0; i < n && rc == PAR_OK; i++) {
        last = acks[i].seq > last ? acks[i].seq : last;
        if (acks[i].http_status == 0)
            exported++;
        else {
            dead++;
            rc =
                ops->dead_record(db, exporter, acks[i].seq, acks[i].http_status, acks[i].body, err);
        }
    }
    if (rc == PAR_OK)
        rc = ops->move_cursor(db, exporter, last, exported, dead, err);
    if (rc != PAR_OK) {
        ops->rollback(db);
        return rc;
    }
    return ops->commit(db, err);
}

int par__export_fold(const par_export_db_ops_t *ops, void *db, const char *exporter, int64_t seq,
                     int http_status, const char *body, par_buf_t *err)
{
    int rc =
        http_status == 0 ? PAR_OK : ops->dead_record(db, exporter, seq, http_status, body, err);
    if (rc == PAR_OK)
        rc = ops->move_cursor(db, exporter, seq, 0, http_status != 0, err);
    return rc;
}
