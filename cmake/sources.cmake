# sources.cmake - every file the library is built from, one per line.
#
# Listed rather than globbed: a build then contains exactly the files named
# here, a stray file in src/ (a scratch copy, an editor's backup) is never
# compiled in, and adding a file is a reviewed change to this list. A file
# on disk that no list names is reported at configure time (see
# skipq_check_listed below), so a new file cannot be forgotten silently.
# Paths are relative to the project's root.

set(SKIPQ_LIB_SOURCES
  src/backoff.c
  src/check.c
  src/config.c
  src/config_keys.c
  src/config_schedules.c
  src/config_set.c
  src/config_yaml.c
  src/conn.c
  src/enqueue.c
  src/enqueue_control.c
  src/enqueue_copy.c
  src/error.c
  src/escape.c
  src/exec_command.c
  src/exec_persistent.c
  src/exec_persistent_proto.c
  src/exec_pool.c
  src/job.c
  src/outcome.c
  src/json.c
  src/jsonl.c
  src/jsonscan.c
  src/log.c
  src/metrics.c
  src/migrate.c
  src/migrate_sql.c
  src/parse.c
  src/statements.c
  src/statements_send.c
  src/supervise.c
  src/worker.c
  src/worker_claim.c
  src/worker_complete.c
  src/worker_maint.c
  src/worker_pause.c
  src/worker_prefetch.c
  src/worker_schedule.c
  src/worker_progress.c
  src/worker_session.c
)

# Private headers: not compiled on their own; listed so IDEs show them and
# the check below knows them.
set(SKIPQ_LIB_PRIVATE_HEADERS
  src/abi.h
  src/config_internal.h
  src/enqueue_internal.h
  src/internal.h
  src/lock_keys.h
  src/statements.h
  src/worker.h
  src/worker_internal.h
  src/worker_prefetch.h
)

# Migrations, applied in this order by `skipq migrate`. A released
# migration is never edited; a new one is appended with the next number.
set(SKIPQ_MIGRATIONS
  migrations/0001_init.sql
  migrations/0002_vacuum_at_full_speed.sql
  migrations/0003_worker_liveness.sql
  migrations/0004_job_control.sql
  migrations/0005_unique_jobs.sql
  migrations/0006_dependencies.sql
  migrations/0007_schedules.sql
  migrations/0008_queues.sql
  migrations/0009_flow_control.sql
  migrations/0010_archive.sql
)

# SQL applied after the migrations on every `skipq migrate`.
set(SKIPQ_SQL
  sql/functions.sql
  sql/enqueue.sql
  sql/deps.sql
  sql/schedules.sql
  sql/outcomes.sql
  sql/queues.sql
  sql/limits.sql
  sql/archive.sql
)

# Embedded but applied only by `skipq migrate --roles`: it needs
# CREATEROLE, which a plain migrate must not require.
set(SKIPQ_ROLES_SQL
  sql/roles.sql
)

# skipq_check_listed(GLOB FILE...): warn (fail under SKIPQ_WERROR) about
# files matching GLOB that are not among FILE... (paths relative to the
# calling CMakeLists.txt, or absolute).
function(skipq_check_listed glob)
  set(listed)
  foreach(f ${ARGN})
    get_filename_component(abs ${f} ABSOLUTE BASE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
    list(APPEND listed ${abs})
  endforeach()
  file(GLOB found ${glob})
  foreach(f ${found})
    if(NOT f IN_LIST listed)
      set(level WARNING)
      if(SKIPQ_WERROR)
        set(level FATAL_ERROR)
      endif()
      file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${f})
      message(${level} "${rel} is named in no source list (cmake/sources.cmake, "
                       "cli/CMakeLists.txt, examples/CMakeLists.txt): it is not built")
    endif()
  endforeach()
endfunction()
