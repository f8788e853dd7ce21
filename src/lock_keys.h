/*
 * lock_keys.h - the advisory lock keys skipq takes, (class, object): the
 * one definition. The library's C includes it; cmake/embed_sql.cmake puts
 * the same numbers in place of each @NAME@ in sql/ when it embeds the
 * SQL; the tests include it. Changing a number is a schema change: old
 * workers and new ones would not see each other's locks.
 */
#ifndef SKIPQ_LOCK_KEYS_H
#define SKIPQ_LOCK_KEYS_H

/* Keys of class SKIPQ__LOCK_CLASS: one lock each. */
#define SKIPQ__LOCK_CLASS 1936421120
#define SKIPQ__LOCK_MIGRATE 0   /* skipq migrate, transaction-level */
#define SKIPQ__LOCK_RESCUER 1   /* older workers' rescuer turn */
#define SKIPQ__LOCK_RETENTION 2 /* a worker's retention prune, one turn */
#define SKIPQ__LOCK_VACUUM 3    /* a worker's VACUUM of skipq.jobs, one turn */
/* held shared by every connection that has called skipq_enqueue outside
 * a transaction: one whose exclusive try succeeds is the only producer
 * (enqueue.c) */
#define SKIPQ__LOCK_PRODUCER 4

/* (class, worker id & 2^31-1): held by a live worker's session. The
 * object key is the id's low 31 bits, so that ids past 2^31 neither wrap
 * in C nor raise in SQL, which computes the same ((id & 2147483647)::int4,
 * skipq.worker_gone). Two ids 2^31 apart share a key; the only harm is
 * that one may look alive while the other lives, until its heartbeat is
 * older than its lease. */
#define SKIPQ__LOCK_CLASS_WORKER 1936421121
#define SKIPQ__WORKER_LOCK_KEY(id) ((int32_t)((uint64_t)(id)&0x7FFFFFFFu))

/* (class, hashtext(queue)): held shared by each worker that may be
 * waiting for a NOTIFY on that queue (the worker's idle lock) */
#define SKIPQ__LOCK_CLASS_IDLE 1936421122

#define SKIPQ__STR(x) #x
#define SKIPQ__XSTR(x) SKIPQ__STR(x)

/* The same as text, for statements: "SELECT pg_try_advisory_lock("
 * SKIPQ__LOCK_CLASS_S ", " SKIPQ__LOCK_VACUUM_S ")". */
#define SKIPQ__LOCK_CLASS_S SKIPQ__XSTR(SKIPQ__LOCK_CLASS)
#define SKIPQ__LOCK_MIGRATE_S SKIPQ__XSTR(SKIPQ__LOCK_MIGRATE)
#define SKIPQ__LOCK_RESCUER_S SKIPQ__XSTR(SKIPQ__LOCK_RESCUER)
#define SKIPQ__LOCK_RETENTION_S SKIPQ__XSTR(SKIPQ__LOCK_RETENTION)
#define SKIPQ__LOCK_VACUUM_S SKIPQ__XSTR(SKIPQ__LOCK_VACUUM)
#define SKIPQ__LOCK_PRODUCER_S SKIPQ__XSTR(SKIPQ__LOCK_PRODUCER)
#define SKIPQ__LOCK_CLASS_WORKER_S SKIPQ__XSTR(SKIPQ__LOCK_CLASS_WORKER)
#define SKIPQ__LOCK_CLASS_IDLE_S SKIPQ__XSTR(SKIPQ__LOCK_CLASS_IDLE)

#endif
