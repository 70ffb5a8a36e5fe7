#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/file.h"

struct dir {
        char path[64];
        int fd;
};

static int setup(void **state) {
        struct dir *d = calloc(1, sizeof(*d));

        assert_non_null(d);
        snprintf(d->path, sizeof(d->path), "/tmp/kh-test-file-XXXXXX");
        assert_non_null(mkdtemp(d->path));
        d->fd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(d->fd >= 0);
        *state = d;
        return 0;
}

static int teardown(void **state) {
        struct dir *d = *state;
        DIR *dir = fdopendir(d->fd);
        struct dirent *e;

        while ((e = readdir(dir)))
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                        (void) unlinkat(dirfd(dir), e->d_name,
                                        e->d_type == DT_DIR ? AT_REMOVEDIR : 0);
        closedir(dir);
        rmdir(d->path);
        free(d);
        return 0;
}

/* Names in the folder other than "." and "..", joined by spaces. */
static void list(int fd, char *out, size_t len) {
        DIR *dir = fdopendir(dup(fd));
        struct dirent *e;

        out[0] = 0;
        rewinddir(dir);
        while ((e = readdir(dir)))
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                        strncat(out, e->d_name, len - strlen(out) - 2);
                        strcat(out, " ");
                }
        closedir(dir);
}

static void test_write_then_read_round_trip(void **state) {
        struct dir *d = *state;
        struct kh_buf b;
        struct stat st;
        char names[256];

        assert_int_equal(kh_file_write_atomic(d->fd, "a", "hello", 5, 0640, 0), 0);
        assert_int_equal(fstatat(d->fd, "a", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 0640);
        kh_buf_init(&b, 100, false);
        assert_int_equal(kh_file_read(d->fd, "a", 0, 100, &b), 0);
        assert_int_equal(b.len, 5);
        assert_memory_equal(b.data, "hello", 5);
        kh_buf_free(&b);
        list(d->fd, names, sizeof(names));
        assert_string_equal(names, "a ");      /* no temporary file left */
}

static void test_write_replaces_and_excl_refuses(void **state) {
        struct dir *d = *state;
        struct kh_buf b;

        assert_int_equal(kh_file_write_atomic(d->fd, "a", "one", 3, 0600, KH_FILE_EXCL), 0);
        assert_int_equal(kh_file_write_atomic(d->fd, "a", "two", 3, 0600, KH_FILE_EXCL), -EEXIST);
        kh_buf_init(&b, 100, false);
        assert_int_equal(kh_file_read(d->fd, "a", 0, 100, &b), 0);
        assert_memory_equal(b.data, "one", 3);  /* the first writer won */
        kh_buf_reset(&b);
        assert_int_equal(kh_file_write_atomic(d->fd, "a", "three", 5, 0600, 0), 0);
        assert_int_equal(kh_file_read(d->fd, "a", 0, 100, &b), 0);
        assert_int_equal(b.len, 5);
        assert_memory_equal(b.data, "three", 5);
        kh_buf_free(&b);
}

static void test_write_with_a_path_uses_its_folder(void **state) {
        struct dir *d = *state;
        char path[128], names[256];
        struct kh_buf b;
        int sub;

        assert_int_equal(mkdirat(d->fd, "sub", 0700), 0);
        snprintf(path, sizeof(path), "%s/sub/x", d->path);
        assert_int_equal(kh_file_write_atomic(AT_FDCWD, path, "x1", 2, 0600, 0), 0);
        kh_buf_init(&b, 10, false);
        assert_int_equal(kh_file_read(AT_FDCWD, path, 0, 10, &b), 0);
        assert_memory_equal(b.data, "x1", 2);
        kh_buf_free(&b);
        sub = openat(d->fd, "sub", O_RDONLY | O_DIRECTORY);
        list(sub, names, sizeof(names));
        close(sub);
        assert_string_equal(names, "x ");
        assert_int_equal(kh_file_write_atomic(AT_FDCWD, "/nonexistent-kh/x", "x", 1, 0600, 0),
                         -ENOENT);
        assert_int_equal(kh_file_write_atomic(d->fd, "sub/", "x", 1, 0600, 0), -EINVAL);
}

static void test_read_refuses_large_and_irregular_files(void **state) {
        struct dir *d = *state;
        struct kh_buf b;

        assert_int_equal(kh_file_write_atomic(d->fd, "big", "0123456789", 10, 0600, 0), 0);
        kh_buf_init(&b, 100, false);
        assert_int_equal(kh_file_read(d->fd, "big", 0, 9, &b), -EFBIG);
        assert_int_equal(kh_file_read(d->fd, "big", 0, 10, &b), 0);
        kh_buf_reset(&b);
        assert_int_equal(mkdirat(d->fd, "dir", 0700), 0);
        assert_int_equal(kh_file_read(d->fd, "dir", 0, 10, &b), -EINVAL);
        assert_int_equal(kh_file_read(d->fd, "missing", 0, 10, &b), -ENOENT);
        assert_int_equal(symlinkat("big", d->fd, "link"), 0);
        assert_int_equal(kh_file_read(d->fd, "link", KH_FILE_NOFOLLOW, 10, &b), -ELOOP);
        assert_int_equal(kh_file_read(d->fd, "link", 0, 10, &b), 0);  /* followed */
        assert_int_equal(b.len, 10);
        kh_buf_free(&b);
}

static void test_read_respects_the_buffer_maximum(void **state) {
        struct dir *d = *state;
        struct kh_buf b;

        assert_int_equal(kh_file_write_atomic(d->fd, "f", "0123456789", 10, 0600, 0), 0);
        kh_buf_init(&b, 4, true);
        assert_int_equal(kh_file_read(d->fd, "f", 0, 100, &b), -EFBIG);
        kh_buf_free(&b);
}

static void test_open_regular_gives_status(void **state) {
        struct dir *d = *state;
        struct stat st;
        int fd;

        assert_int_equal(kh_file_write_atomic(d->fd, "s", "abc", 3, 0604, 0), 0);
        fd = kh_file_open_regular(d->fd, "s", KH_FILE_NOFOLLOW, &st);
        assert_true(fd >= 0);
        assert_int_equal(st.st_size, 3);
        assert_int_equal(st.st_mode & 07777, 0604);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_write_then_read_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_replaces_and_excl_refuses, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_with_a_path_uses_its_folder, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_refuses_large_and_irregular_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_respects_the_buffer_maximum, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_regular_gives_status, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
