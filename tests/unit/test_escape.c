/*
 * test_escape.c - text from jobs and handlers made safe for a terminal
 * (skipq_escape_text): what is escaped, what is left alone.
 */
#include "harness.h"

#include "internal.h"

static void
expect_escape(const char *in, unsigned flags, const char *want)
{
    char *got = skipq_escape_text(in, flags);

    ASSERT_TRUE(got != NULL);
    if (strcmp(got, want) != 0)
        HARNESS_FAIL("escape \"%s\": got \"%s\", wanted \"%s\"", in, got, want);
    free(got);
}

TEST(escape_control_characters)
{
    /* clear screen, window title, bell, backspace, DEL */
    expect_escape("a\x1b[2Jb", 0, "a\\u001b[2Jb");
    expect_escape("\x1b]0;pwned\x07", 0, "\\u001b]0;pwned\\u0007");
    expect_escape("x\by\x7f", 0, "x\\u0008y\\u007f");
    /* C1: CSI (U+009B) and OSC (U+009D) as UTF-8 */
    expect_escape("a\xc2\x9b"
                  "2Jb\xc2\x9d",
                  0, "a\\u009b2Jb\\u009d");
    /* one line: newlines, carriage returns and tabs become spaces */
    expect_escape("l1\nl2\r\tend", 0, "l1 l2  end");
    /* several lines: newlines and tabs kept, a carriage return is not */
    expect_escape("l1\nl2\r\tend", SKIPQ_ESCAPE_MULTILINE, "l1\nl2\\u000d\tend");
}

TEST(escape_bidi_controls)
{
    /* RLO, PDF, LRI, PDI, RLM, ALM, line separator */
    expect_escape("job \xe2\x80\xae"
                  "deliaf\xe2\x80\xac",
                  0, "job \\u202edeliaf\\u202c");
    expect_escape("\xe2\x81\xa6x\xe2\x81\xa9", 0, "\\u2066x\\u2069");
    expect_escape("\xe2\x80\x8f\xd8\x9c", 0, "\\u200f\\u061c");
    expect_escape("a\xe2\x80\xa8"
                  "b",
                  0, "a\\u2028b");
}

TEST(escape_invalid_utf8_bytes)
{
    /* a bare C1 byte, a stray continuation, an overlong '/', a surrogate,
     * a sequence cut short by the end */
    expect_escape("a\x9b"
                  "b",
                  0, "a\\x9bb");
    expect_escape("\x80", 0, "\\x80");
    expect_escape("\xc0\xaf", 0, "\\xc0\\xaf");
    expect_escape("\xed\xa0\x80", 0, "\\xed\\xa0\\x80");
    expect_escape("ab\xe2\x80", 0, "ab\\xe2\\x80");
    expect_escape("\xf4\x90\x80\x80", 0, "\\xf4\\x90\\x80\\x80");
}

TEST(escape_leaves_text_alone)
{
    expect_escape("", 0, "");
    expect_escape(NULL, 0, "");
    expect_escape("send_email", 0, "send_email");
    /* accents, CJK, emoji, backslashes and quotes are text */
    expect_escape("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80", 0,
                  "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80");
    expect_escape("C:\\tmp \"q\" 'x' %s", 0, "C:\\tmp \"q\" 'x' %s");
    /* JSON text stays valid JSON: only \u escapes are added */
    expect_escape("{\"k\": \"\\u001b\xe2\x80\xae\"}", SKIPQ_ESCAPE_MULTILINE,
                  "{\"k\": \"\\u001b\\u202e\"}");
}

TEST(escape_worst_case_growth)
{
    char in[301], *out;

    memset(in, 0x1b, 300);
    in[300] = '\0';
    out = skipq_escape_text(in, 0);
    ASSERT_TRUE(out != NULL);
    ASSERT_EQ(strlen(out), 300 * 6);
    free(out);
}

int
main(int argc, char **argv)
{
    return harness_main(argc, argv);
}
