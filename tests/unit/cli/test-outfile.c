/* A file that appears under its name only once complete (src/cli/outfile.c). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/outfile.h"

struct dir {
        char path[64];
        char file[128];
};

static int setup(void **state) {
        struct dir *d = calloc(1, sizeof(*d));

        assert_non_null(d);
        snprintf(d->path, sizeof(d->path), "/tmp/kh-test-outfile-XXXXXX");
        assert_non_null(mkdtemp(d->path));
        snprintf(d->file, sizeof(d->file), "%s/export.jsonl", d->path);
        *state = d;
        return 0;
}

/* The names in d, sorted, joined by spaces ("" when empty). */
static void list_dir(const struct dir *d, char *out, size_t len) {
        struct dirent **names;
        int n = scandir(d->path, &names, NULL, alphasort);

        assert_true(n >= 0);
        out[0] = 0;
        for (int i = 0; i < n; i++) {
                if (strcmp(names[i]->d_name, ".") && strcmp(names[i]->d_name, "..")) {
                        if (out[0])
                                strncat(out, " ", len - strlen(out) - 1);
                        strncat(out, names[i]->d_name, len - strlen(out) - 1);
                }
                free(names[i]);
        }
        free(names);
}

static int teardown(void **state) {
        struct dir *d = *state;
        struct dirent *e;
        DIR *dir = opendir(d->path);
        char p[512];

        assert_non_null(dir);
        while ((e = readdir(dir)))
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                        snprintf(p, sizeof(p), "%s/%s", d->path, e->d_name);
                        unlink(p);
                }
        closedir(dir);
        rmdir(d->path);
        free(d);
        return 0;
}

static void assert_content(const char *path, const char *want) {
        char buf[256];
        FILE *f = fopen(path, "re");
        size_t n;

        assert_non_null(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = 0;
        fclose(f);
        assert_string_equal(buf, want);
}

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fputs(text, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
}

static void test_appears_only_when_committed(void **state) {
        struct dir *d = *state;
        struct kh_outfile *o = NULL;
        char names[512];
        struct stat st;

        assert_int_equal(kh_outfile_open(d->file, &o), 0);
        assert_true(fputs("line 1\n", kh_outfile_stream(o)) >= 0);
        assert_int_equal(access(d->file, F_OK), -1); /* not there while being written */
        list_dir(d, names, sizeof(names));
        assert_int_equal(strncmp(names, ".export.jsonl.tmp-", 18), 0);

        assert_int_equal(kh_outfile_commit(o, false), 0);
        assert_content(d->file, "line 1\n");
        assert_int_equal(stat(d->file, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600); /* the tenant's history: owner only */
        kh_outfile_free(o);
        list_dir(d, names, sizeof(names));
        assert_string_equal(names, "export.jsonl"); /* no temporary file left */
}

static void test_existing_file_kept_without_replace(void **state) {
        struct dir *d = *state;
        struct kh_outfile *o = NULL;
        char names[512];

        write_file(d->file, "old\n");
        assert_int_equal(kh_outfile_open(d->file, &o), 0);
        assert_true(fputs("new\n", kh_outfile_stream(o)) >= 0);
        assert_int_equal(kh_outfile_commit(o, false), -EEXIST);
        assert_content(d->file, "old\n");
        kh_outfile_free(o);
        list_dir(d, names, sizeof(names));
        assert_string_equal(names, "export.jsonl");
}

static void test_existing_file_replaced_with_replace(void **state) {
        struct dir *d = *state;
        struct kh_outfile *o = NULL;
        char names[512];

        write_file(d->file, "old\n");
        assert_int_equal(kh_outfile_open(d->file, &o), 0);
        assert_true(fputs("new\n", kh_outfile_stream(o)) >= 0);
        assert_content(d->file, "old\n"); /* readers see the old one until the rename */
        assert_int_equal(kh_outfile_commit(o, true), 0);
        assert_content(d->file, "new\n");
        kh_outfile_free(o);
        list_dir(d, names, sizeof(names));
        assert_string_equal(names, "export.jsonl");
}

static void test_abandoned_file_leaves_nothing(void **state) {
        struct dir *d = *state;
        struct kh_outfile *o = NULL;
        char names[512];

        assert_int_equal(kh_outfile_open(d->file, &o), 0);
        assert_true(fputs("partial", kh_outfile_stream(o)) >= 0);
        kh_outfile_free(o); /* an interrupted export */
        list_dir(d, names, sizeof(names));
        assert_string_equal(names, "");
}

static void test_open_errors(void **state) {
        struct dir *d = *state;
        struct kh_outfile *o = NULL;
        char path[160];

        snprintf(path, sizeof(path), "%s/no-such-folder/x", d->path);
        assert_int_equal(kh_outfile_open(path, &o), -ENOENT);
        snprintf(path, sizeof(path), "%s/", d->path);
        assert_int_equal(kh_outfile_open(path, &o), -EISDIR);
        assert_null(o);
}

static void test_bare_name_in_current_folder(void **state) {
        struct dir *d = *state;
        struct kh_outfile *o = NULL;
        char old[4096];

        assert_non_null(getcwd(old, sizeof(old)));
        assert_int_equal(chdir(d->path), 0);
        assert_int_equal(kh_outfile_open("bare.jsonl", &o), 0);
        assert_true(fputs("x\n", kh_outfile_stream(o)) >= 0);
        assert_int_equal(kh_outfile_commit(o, false), 0);
        kh_outfile_free(o);
        assert_int_equal(chdir(old), 0);
        snprintf(d->file, sizeof(d->file), "%s/bare.jsonl", d->path);
        assert_content(d->file, "x\n");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_appears_only_when_committed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_existing_file_kept_without_replace, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_existing_file_replaced_with_replace, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_abandoned_file_leaves_nothing, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bare_name_in_current_folder, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
