/* SPDX-License-Identifier: Apache-2.0 */
/* The credentials file: where it lives, that nobody else can read it (0600 in a 0700 directory,
 * whatever the umask), that a rewrite replaces it whole (a reader never sees half a file), and that
 * a broken file is reported rather than silently overwritten. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

#include "credentials.h"
#include "failure.h"

struct fixture {
    char dir[128];
    char path[CRED_PATH_MAX];
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/emp-test-cred-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    struct failure fail;
    failure_init(&fail);
    /* XDG_CONFIG_HOME is a directory that does not exist yet */
    char config_home[256];
    snprintf(config_home, sizeof(config_home), "%s/config", fx->dir);
    if (cred_path(config_home, "/nonexistent", fx->path, &fail) < 0)
        return -1;
    *state = fx;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    nftw(fx->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "re");
    assert_non_null(f);
    char *text = calloc(1, 65536);
    size_t len = fread(text, 1, 65535, f);
    text[len] = '\0';
    fclose(f);
    return text;
}

static void test_path_follows_xdg_then_home(void **state)
{
    char path[CRED_PATH_MAX];
    struct failure fail;
    failure_init(&fail);
    assert_int_equal(cred_path("/x/cfg", "/home/a", path, &fail), 0);
    assert_string_equal(path, "/x/cfg/emp/credentials.json");
    assert_int_equal(cred_path(NULL, "/home/a", path, &fail), 0);
    assert_string_equal(path, "/home/a/.config/emp/credentials.json");
    /* the XDG spec: a relative XDG_CONFIG_HOME is ignored */
    assert_int_equal(cred_path("relative/cfg", "/home/a", path, &fail), 0);
    assert_string_equal(path, "/home/a/.config/emp/credentials.json");
    assert_true(cred_path(NULL, NULL, path, &fail) < 0);
    assert_true(failure_is_set(&fail));
    assert_non_null(strstr(fail.error.message, "HOME"));
    failure_clear(&fail);
}

static void test_saved_file_is_private_whatever_the_umask(void **state)
{
    struct fixture *fx = *state;
    struct failure fail;
    failure_init(&fail);
    struct cred_store *store;
    mode_t old_umask = umask(0); /* the most permissive: modes must still be 0600 and 0700 */
    assert_int_equal(cred_load(fx->path, &store, &fail), 0); /* missing: empty */
    assert_null(cred_current(store));
    assert_int_equal(cred_set(store, "http://127.0.0.1:7420", "alice", "emp_secret", "2030-01-01"),
                     0);
    assert_int_equal(cred_save(store, fx->path, &fail), 0);
    umask(old_umask);
    cred_free(store);

    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    char dir[CRED_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", fx->path);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);

    /* and it reads back */
    assert_int_equal(cred_load(fx->path, &store, &fail), 0);
    assert_string_equal(cred_current(store), "http://127.0.0.1:7420");
    struct cred_entry entry;
    assert_int_equal(cred_get(store, "http://127.0.0.1:7420", &entry), 0);
    assert_string_equal(entry.username, "alice");
    assert_string_equal(entry.token, "emp_secret");
    assert_string_equal(entry.expires_at, "2030-01-01");
    assert_int_equal(cred_get(store, "http://other:1", &entry), -ENOENT);
    cred_free(store);
}

static void test_rewrite_is_atomic_and_tightens_modes(void **state)
{
    struct fixture *fx = *state;
    struct failure fail;
    failure_init(&fail);
    char dir[CRED_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", fx->path);
    *strrchr(dir, '/') = '\0';
    char parent[CRED_PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", dir);
    *strrchr(parent, '/') = '\0';
    assert_int_equal(mkdir(parent, 0755), 0);
    assert_int_equal(mkdir(dir, 0755), 0); /* made by someone else, too open */
    static const char old[] = "{\"current\": \"http://a:1\", \"servers\": {\"http://a:1\": "
                              "{\"username\": \"bob\", \"token\": \"emp_old\"}}, \"future\": 7}";
    write_file(fx->path, old, 0644);

    /* a second name for the old file: an in-place rewrite would change what it shows */
    char witness[CRED_PATH_MAX + 16];
    snprintf(witness, sizeof(witness), "%s/witness", fx->dir);
    assert_int_equal(link(fx->path, witness), 0);

    struct cred_store *store;
    assert_int_equal(cred_load(fx->path, &store, &fail), 0);
    assert_int_equal(cred_set(store, "http://b:2", "carol", "emp_new", NULL), 0);
    assert_int_equal(cred_forget(store, "http://a:1"), 0);
    assert_int_equal(cred_forget(store, "http://a:1"), -ENOENT);
    assert_int_equal(cred_save(store, fx->path, &fail), 0);
    cred_free(store);

    char *witnessed = read_file(witness);
    assert_string_equal(witnessed, old); /* the old file is untouched: the new one replaced it */
    free(witnessed);
    char *now = read_file(fx->path);
    assert_null(strstr(now, "emp_old"));
    assert_non_null(strstr(now, "emp_new"));
    assert_non_null(strstr(now, "\"future\"")); /* keys this emp does not know are kept */
    free(now);

    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);

    /* no temporary file is left behind */
    char pattern[CRED_PATH_MAX + 64];
    snprintf(pattern, sizeof(pattern), "ls -A '%s' | grep -v '^credentials.json$' | wc -l", dir);
    FILE *ls = popen(pattern, "r");
    int leftovers = -1;
    assert_int_equal(fscanf(ls, "%d", &leftovers), 1);
    pclose(ls);
    assert_int_equal(leftovers, 0);
}

static void test_broken_file_is_reported_not_replaced(void **state)
{
    struct fixture *fx = *state;
    struct failure fail;
    failure_init(&fail);
    char dir[CRED_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", fx->path);
    *strrchr(dir, '/') = '\0';
    char parent[CRED_PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", dir);
    *strrchr(parent, '/') = '\0';
    mkdir(parent, 0700);
    mkdir(dir, 0700);
    write_file(fx->path, "{\"servers\": [", 0600);
    struct cred_store *store = NULL;
    assert_true(cred_load(fx->path, &store, &fail) < 0);
    assert_null(store);
    assert_int_equal(failure_exit_status(&fail), FAILURE_FAILED);
    assert_non_null(strstr(fail.error.message, fx->path));
    assert_non_null(strstr(fail.error.message, "not valid JSON"));
    failure_clear(&fail);

    write_file(fx->path, "{\"servers\": []}", 0600); /* JSON, but not the shape */
    assert_true(cred_load(fx->path, &store, &fail) < 0);
    assert_non_null(strstr(fail.error.message, "shape"));
    failure_clear(&fail);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_follows_xdg_then_home),
        cmocka_unit_test_setup_teardown(test_saved_file_is_private_whatever_the_umask, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_rewrite_is_atomic_and_tightens_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_file_is_reported_not_replaced, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
