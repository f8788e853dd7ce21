/*
 * test_abi.c - the ABI a program built against one skipq.h keeps with a
 * libskipq built against another (docs/abi.md).
 *
 * The structs a caller passes in grow at the end. To show that an old
 * caller still works with a library whose struct has grown, the test
 * builds two programs with the system's C compiler: the library's own
 * reading code (src/abi.h) compiled against a copy of skipq.h with one
 * field more in skipq_enqueue_opts and skipq_job_spec, linked with a
 * caller compiled against the real skipq.h, and the reverse. The caller
 * puts its structs at the very end of a page followed by an inaccessible
 * one, so a read past the caller's size kills the program.
 *
 * Also: what libskipq.so exports is exactly what the headers declare and
 * libskipq.map lists (scripts/check_exports.sh).
 */
#include "harness.h"

#include "abi.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SKIPQ_TEST_SOURCE_DIR
#error "tests/CMakeLists.txt defines SKIPQ_TEST_SOURCE_DIR"
#endif

#define ADDED_FIELD "    int64_t added_by_test_abi;\n"

static char workdir[PATH_MAX];

static const char *
cc(void)
{
    const char *c = getenv("CC");
    return c && *c ? c : "cc";
}

static char *
read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0;

    if (!f)
        HARNESS_FAIL("could not open \"%s\": %s", path, strerror(errno));
    FILE *m = open_memstream(&buf, &len);
    int c;
    while ((c = getc(f)) != EOF)
        putc(c, m);
    fclose(f);
    fclose(m);
    return buf;
}

static void
write_text(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        HARNESS_FAIL("could not write \"%s\"", path);
}

/* text with `insert` put before the first line that is `before` */
static char *
insert_before(const char *text, const char *before, const char *insert)
{
    const char *at = strstr(text, before);
    char *out = NULL;

    if (!at)
        HARNESS_FAIL("\"%s\" not found in skipq.h", before);
    if (asprintf(&out, "%.*s%s%s", (int)(at - text), text, insert, at) < 0)
        HARNESS_FAIL("out of memory");
    return out;
}

/* workdir/old/skipq.h: the real header; workdir/new/skipq.h: the same
 * with a field added at the end of both structs a caller passes in. */
static void
make_headers(void)
{
    char dir[PATH_MAX * 2];
    char *real = read_text(SKIPQ_TEST_SOURCE_DIR "/include/skipq.h");
    char *a = insert_before(real, "} skipq_enqueue_opts;", ADDED_FIELD);
    char *grown = insert_before(a, "} skipq_job_spec;", ADDED_FIELD);

    snprintf(workdir, sizeof workdir, "/tmp/skipq-test-abi.XXXXXX");
    if (!mkdtemp(workdir))
        HARNESS_FAIL("mkdtemp: %s", strerror(errno));
    snprintf(dir, sizeof dir, "%s/old", workdir);
    mkdir(dir, 0700);
    write_text(dir, "skipq.h", real);
    snprintf(dir, sizeof dir, "%s/new", workdir);
    mkdir(dir, 0700);
    write_text(dir, "skipq.h", grown);
    free(real);
    free(a);
    free(grown);
}

/* The library's side: src/abi.h, the code skipq_enqueue and
 * skipq_enqueue_batch read the caller's structs with, reporting what it
 * read. */
static const char lib_side[] =
    "#include \"abi.h\"\n"
    "#include <stdio.h>\n"
    "void lib_opts(const skipq_enqueue_opts *in)\n"
    "{\n"
    "    skipq_enqueue_opts o;\n"
    "    int rc = skipq__enqueue_opts_in(in, &o);\n"
    "    printf(\"opts rc=%d queue=%s priority=%d max_payload=%zu\\n\", rc,\n"
    "           o.queue ? o.queue : \"-\", (int)o.priority, o.max_payload);\n"
    "#ifdef ADDED\n"
    "    printf(\"opts added=%lld\\n\", (long long)o.added_by_test_abi);\n"
    "#endif\n"
    "}\n"
    "void lib_specs(const skipq_job_spec *jobs, size_t stride, size_t n)\n"
    "{\n"
    "    for (size_t i = 0; i < n; i++) {\n"
    "        skipq_job_spec s;\n"
    "        int rc = skipq__job_spec_in(jobs, stride, i, &s);\n"
    "        printf(\"spec %zu rc=%d kind=%s payload=%s\\n\", i, rc,\n"
    "               s.kind ? s.kind : \"-\",\n"
    "               s.payload_json ? s.payload_json : \"-\");\n"
    "#ifdef ADDED\n"
    "        printf(\"spec %zu added=%lld\\n\", i, (long long)s.added_by_test_abi);\n"
    "#endif\n"
    "    }\n"
    "}\n";

/* The caller's side: structs as its skipq.h has them, ending where an
 * inaccessible page begins. With ADDED (the grown header), it sets the
 * added field to argv[1]. */
static const char caller_side[] =
    "#define _GNU_SOURCE\n"
    "#include \"skipq.h\"\n"
    "#include <stdlib.h>\n"
    "#include <sys/mman.h>\n"
    "#include <unistd.h>\n"
    "void lib_opts(const skipq_enqueue_opts *in);\n"
    "void lib_specs(const skipq_job_spec *jobs, size_t stride, size_t n);\n"
    "static void *page_end(size_t size)\n"
    "{\n"
    "    size_t pg = (size_t)sysconf(_SC_PAGESIZE);\n"
    "    char *p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE,\n"
    "                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);\n"
    "    if (p == MAP_FAILED || mprotect(p + pg, pg, PROT_NONE) != 0)\n"
    "        exit(3);\n"
    "    return p + pg - size;\n"
    "}\n"
    "int main(int argc, char **argv)\n"
    "{\n"
    "    long long added = argc > 1 ? atoll(argv[1]) : 0;\n"
    "    skipq_enqueue_opts init = SKIPQ_ENQUEUE_OPTS_INIT;\n"
    "    skipq_enqueue_opts *o = page_end(sizeof *o);\n"
    "    *o = init;\n"
    "    o->queue = \"mail\";\n"
    "    o->priority = 7;\n"
    "    o->max_payload = 4096;\n"
    "#ifdef ADDED\n"
    "    o->added_by_test_abi = added;\n"
    "#endif\n"
    "    lib_opts(o);\n"
    "    skipq_job_spec *jobs = page_end(2 * sizeof *jobs);\n"
    "    jobs[0] = (skipq_job_spec){.kind = \"a\", .payload_json = \"{}\"};\n"
    "    jobs[1] = (skipq_job_spec){.kind = \"b\"};\n"
    "#ifdef ADDED\n"
    "    jobs[1].added_by_test_abi = added;\n"
    "#endif\n"
    "    (void)added;\n"
    "    lib_specs(jobs, sizeof *jobs, 2);\n"
    "    return 0;\n"
    "}\n";

static void
run(const char *cmd)
{
    int st = system(cmd);
    if (st != 0)
        HARNESS_FAIL("\"%s\" exited with status %d", cmd, st);
}

/*
 * Build the library side against lib_hdr ("old" or "new") and the caller
 * against caller_hdr, run the program with arg, and return its output.
 */
static char *
build_and_run(const char *lib_hdr, const char *caller_hdr, const char *arg)
{
    char cmd[PATH_MAX * 4 + 512], out[PATH_MAX * 2];
    const char *flags = "-std=c11 -Wall -Wextra -Werror -c";

    write_text(workdir, "lib_side.c", lib_side);
    write_text(workdir, "caller_side.c", caller_side);
    snprintf(cmd, sizeof cmd,
             "cd %s && %s %s %s -I%s -I%s/src lib_side.c -o lib_side.o && "
             "%s %s %s -I%s caller_side.c -o caller_side.o && "
             "%s lib_side.o caller_side.o -o prog",
             workdir, cc(), flags, strcmp(lib_hdr, "new") == 0 ? "-DADDED" : "", lib_hdr,
             SKIPQ_TEST_SOURCE_DIR, cc(), flags,
             strcmp(caller_hdr, "new") == 0 ? "-DADDED" : "", caller_hdr, cc());
    run(cmd);
    snprintf(out, sizeof out, "%s/out.txt", workdir);
    snprintf(cmd, sizeof cmd, "cd %s && ./prog %s > out.txt", workdir, arg);
    run(cmd);
    return read_text(out);
}

static void
cleanup(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", workdir);
    run(cmd);
}

TEST(old_caller_new_library_reads_only_the_callers_bytes)
{
    make_headers();
    /* the caller's structs end at an inaccessible page: the program
     * dies if the library reads the added field from them */
    char *out = build_and_run("new", "old", "");
    ASSERT_STREQ(out, "opts rc=0 queue=mail priority=7 max_payload=4096\n"
                      "opts added=0\n"
                      "spec 0 rc=0 kind=a payload={}\n"
                      "spec 0 added=0\n"
                      "spec 1 rc=0 kind=b payload=-\n"
                      "spec 1 added=0\n");
    free(out);
    cleanup();
}

TEST(new_caller_old_library_takes_unset_fields_refuses_set_ones)
{
    make_headers();
    /* the added field left 0, as the INIT macro leaves it: read as the
     * old library knows it */
    char *out = build_and_run("old", "new", "0");
    ASSERT_STREQ(out, "opts rc=0 queue=mail priority=7 max_payload=4096\n"
                      "spec 0 rc=0 kind=a payload={}\n"
                      "spec 1 rc=0 kind=b payload=-\n");
    free(out);
    /* set: the old library cannot do what it asks, and says so */
    out = build_and_run("old", "new", "5");
    ASSERT_CONTAINS(out, "opts rc=2 ");
    ASSERT_CONTAINS(out, "spec 0 rc=0 kind=a");
    ASSERT_CONTAINS(out, "spec 1 rc=2 ");
    free(out);
    cleanup();
}

TEST(opts_without_size_are_refused)
{
    skipq_enqueue_opts zeroed = {0}, o;
    skipq_error err = {0};

    zeroed.priority = 3; /* would be silently ignored */
    ASSERT_EQ(skipq__enqueue_opts_in(&zeroed, &o), SKIPQ__IN_BAD_SIZE);
    zeroed.size = SKIPQ__IN_MAX + 1; /* never initialized */
    ASSERT_EQ(skipq__enqueue_opts_in(&zeroed, &o), SKIPQ__IN_BAD_SIZE);
    /* a stride no skipq_job_spec ever had, before any connection */
    skipq_job_spec jobs[1] = {{"k", "{}"}};
    ASSERT_EQ(skipq_enqueue_batch_stride(NULL, jobs, 1, 4, NULL, &err), SKIPQ_ERR_INVALID);
    ASSERT_STREQ(err.message, "skipq_job_spec stride 4 is not the size of a "
                              "skipq_job_spec: call skipq_enqueue_batch()");
    skipq_enqueue_opts init = SKIPQ_ENQUEUE_OPTS_INIT;
    ASSERT_EQ(init.size, sizeof init);
    ASSERT_EQ(skipq__enqueue_opts_in(&init, &o), SKIPQ__IN_OK);
}

TEST(exports_are_the_map_and_the_headers)
{
    char exe[PATH_MAX], cmd[PATH_MAX * 3];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

    ASSERT_TRUE(n > 0);
    exe[n] = '\0';
    /* build/tests/test_abi -> build/libskipq.so */
    char *dir = dirname(dirname(exe));
    snprintf(cmd, sizeof cmd, "%s/scripts/check_exports.sh %s/libskipq.so",
             SKIPQ_TEST_SOURCE_DIR, dir);
    run(cmd);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
