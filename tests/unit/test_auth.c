/* SPDX-License-Identifier: Apache-2.0 */
/* Accounts against a real redis-server: Argon2id hashes only, tokens only as digests, throttled
 * failed logins, and the scheduler's credential. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"
#include "emp/timeutil.h"
#include "redis_fixture.h"

struct ctx {
    struct redis_fixture redis;
    struct store *store;
    struct auth *auth;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof(*c));
    struct emp_error err = {0};
    if (redis_fixture_start(&c->redis) < 0 || store_open(c->redis.url, &c->store, &err) < 0)
        return -1;
    struct auth_config config = {
        .token_ttl_s = 3600, .login_max_failures = 3, .login_window_s = 60};
    if (auth_new(c->store, &config, &c->auth, &err) < 0)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    auth_free(c->auth);
    store_close(c->store);
    redis_fixture_stop(&c->redis);
    free(c);
    return 0;
}

static void test_create_and_login(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    int64_t created;
    assert_int_equal(auth_create_user(c->auth, "alice", "correct horse", &created, &err), 0);
    assert_int_equal(auth_create_user(c->auth, "alice", "another one", &created, &err), -EEXIST);
    assert_int_equal(err.code, EMP_ERR_CONFLICT);

    /* only an Argon2id hash is stored */
    char out[256];
    assert_int_equal(
        redis_fixture_cli(&c->redis, "HGET emp:user:alice password_hash", out, sizeof(out)), 0);
    assert_int_equal(strncmp(out, "$argon2id$", 10), 0);
    assert_null(strstr(out, "correct horse"));

    char token[AUTH_TOKEN_MAX];
    int64_t expires = 0, retry = 0;
    emp_error_clear(&err);
    assert_int_equal(auth_login(c->auth, "alice", "correct horse", token, &expires, &retry, &err),
                     0);
    assert_int_equal(strncmp(token, "emp_", 4), 0);
    assert_int_equal(strlen(token), 4 + 43); /* 256 random bits, base64url */
    int64_t now = time_now_ms();
    assert_true(expires > now + 3590 * 1000 && expires <= now + 3600 * 1000);

    /* the session is keyed by the digest; the token itself is nowhere in Redis */
    char digest[AUTH_DIGEST_HEX];
    auth_token_digest(token, digest);
    char args[128];
    snprintf(args, sizeof(args), "GET emp:session:%s", digest);
    assert_int_equal(redis_fixture_cli(&c->redis, args, out, sizeof(out)), 0);
    assert_string_equal(out, "alice");
    snprintf(args, sizeof(args), "--scan --pattern '*%s*'", token + 4);
    assert_int_equal(redis_fixture_cli(&c->redis, args, out, sizeof(out)), 0);
    assert_string_equal(out, "");

    /* two logins, two different tokens */
    char second[AUTH_TOKEN_MAX];
    assert_int_equal(auth_login(c->auth, "alice", "correct horse", second, &expires, &retry, &err),
                     0);
    assert_string_not_equal(token, second);
}

static void test_refusals(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    int64_t created;
    assert_int_equal(auth_create_user(c->auth, "bob", "short", &created, &err), -EINVAL);
    assert_non_null(strstr(err.message, "at least 8"));
    assert_string_equal(err.field, "password");
    emp_error_clear(&err);
    assert_int_equal(auth_create_user(c->auth, "Bob_1", "long enough", &created, &err), -EINVAL);
    assert_string_equal(err.field, "username");
    assert_non_null(strstr(err.message, "'bob-1'"));
}

static void test_throttling(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    int64_t created, expires, retry = 0;
    char token[AUTH_TOKEN_MAX];
    assert_int_equal(auth_create_user(c->auth, "carol", "right password", &created, &err), 0);
    for (int i = 0; i < 2; i++) {
        emp_error_clear(&err);
        assert_int_equal(
            auth_login(c->auth, "carol", "wrong password", token, &expires, &retry, &err), -EACCES);
        assert_int_equal(err.code, EMP_ERR_UNAUTHORIZED);
    }
    /* the third failure locks the username for the window */
    emp_error_clear(&err);
    assert_int_equal(auth_login(c->auth, "carol", "wrong password", token, &expires, &retry, &err),
                     -EBUSY);
    assert_int_equal(err.code, EMP_ERR_THROTTLED);
    assert_true(retry > 0 && retry <= 60);
    /* even the right password waits now */
    emp_error_clear(&err);
    assert_int_equal(auth_login(c->auth, "carol", "right password", token, &expires, &retry, &err),
                     -EBUSY);
    /* unknown users fail like wrong passwords, with the same message */
    emp_error_clear(&err);
    assert_int_equal(auth_login(c->auth, "nobody", "whatever1", token, &expires, &retry, &err),
                     -EACCES);
    assert_string_equal(err.message, "wrong username or password");
}

static void test_scheduler_token(void **state)
{
    struct ctx *c = *state;
    char path[] = "/tmp/emp-sched-XXXXXX";
    int fd = mkstemp(path);
    const char secret[] = "0123456789abcdef0123456789abcdef\n";
    assert_int_equal(write(fd, secret, sizeof(secret) - 1), (ssize_t)sizeof(secret) - 1);
    close(fd);
    struct auth_config config = {.token_ttl_s = 3600,
                                 .login_max_failures = 3,
                                 .login_window_s = 60,
                                 .scheduler_token_file = path};
    struct auth *a;
    struct emp_error err = {0};
    assert_int_equal(auth_new(c->store, &config, &a, &err), 0);
    char digest[AUTH_DIGEST_HEX];
    auth_token_digest("0123456789abcdef0123456789abcdef", digest);
    assert_true(auth_is_scheduler(a, digest));
    auth_token_digest("0123456789abcdef0123456789abcdeF", digest);
    assert_false(auth_is_scheduler(a, digest));
    assert_false(auth_is_scheduler(c->auth, digest)); /* no scheduler configured */
    auth_free(a);

    /* too short a token is refused at start */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "short\n", 6), 6);
    close(fd);
    assert_int_equal(auth_new(c->store, &config, &a, &err), -EINVAL);
    assert_non_null(strstr(err.message, "printable characters"));
    unlink(path);
    emp_error_clear(&err);
    assert_true(auth_new(c->store, &config, &a, &err) < 0);
    assert_non_null(strstr(err.message, path));
}

static void test_bearer(void **state)
{
    const char *token;
    struct emp_error err = {0};
    assert_int_equal(auth_bearer("Bearer abc", &token, &err), 0);
    assert_string_equal(token, "abc");
    assert_int_equal(auth_bearer("bearer  abc", &token, &err), 0);
    assert_string_equal(token, "abc");
    assert_int_equal(auth_bearer(NULL, &token, &err), -EACCES);
    assert_non_null(strstr(err.message, "emp login"));
    emp_error_clear(&err);
    assert_int_equal(auth_bearer("Basic YTpi", &token, &err), -EACCES);
    assert_non_null(strstr(err.message, "Bearer <token>"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_login), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_throttling),       cmocka_unit_test(test_scheduler_token),
        cmocka_unit_test(test_bearer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
