/* SPDX-License-Identifier: Apache-2.0 */
/* Password hashing, tokens and throttling. Passwords exist only in this module's stack frames and
 * are never logged; tokens are handed out once and stored only as digests. */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "emp/timeutil.h"

/* Argon2id with OWASP's baseline (19 MiB, 2 passes): strong, and cheap enough that a 2-core server
 * can log people in without starving the API. At most HASH_SLOTS hashes run at once, which bounds
 * the memory a flood of logins can take. */
#define ARGON_OPSLIMIT      2
#define ARGON_MEMLIMIT      (19u * 1024u * 1024u)
#define HASH_SLOTS          2
#define HASH_WAIT_MS        10000
#define SCHEDULER_TOKEN_MIN 16

struct auth {
    struct store *store;
    struct auth_config config;
    bool has_scheduler;
    unsigned char scheduler_digest[crypto_hash_sha256_BYTES];
    sem_t hash_slots;
    /* verified against when the user does not exist, so that both cases take the same time */
    char dummy_hash[crypto_pwhash_STRBYTES];
};

static int read_scheduler_token(struct auth *a, const char *path, struct emp_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return emp_error_set(err, -errno, EMP_ERR_INVALID_FIELD, "scheduler-token-file",
                             "cannot read the scheduler token file '%s': %s", path,
                             strerror(errno));
    char buf[AUTH_BEARER_MAX + 2];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        return emp_error_set(err, -EIO, EMP_ERR_INVALID_FIELD, "scheduler-token-file",
                             "cannot read the scheduler token file '%s'", path);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    int r = 0;
    bool printable = true;
    for (ssize_t i = 0; i < n; i++)
        printable = printable && buf[i] > ' ' && buf[i] < 0x7f;
    if (n < SCHEDULER_TOKEN_MIN || n > AUTH_BEARER_MAX - 8 || !printable) {
        r = emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "scheduler-token-file",
                          "the scheduler token in '%s' must be %d to %d printable characters "
                          "without spaces (for example from `openssl rand -hex 32`)",
                          path, SCHEDULER_TOKEN_MIN, AUTH_BEARER_MAX - 8);
    } else {
        crypto_hash_sha256(a->scheduler_digest, (const unsigned char *)buf, (size_t)n);
        a->has_scheduler = true;
    }
    sodium_memzero(buf, sizeof(buf));
    return r;
}

int auth_new(struct store *store, const struct auth_config *config, struct auth **ret_auth,
             struct emp_error *err)
{
    if (sodium_init() < 0)
        return emp_error_set(err, -EIO, EMP_ERR_INTERNAL, NULL, "libsodium failed to initialise");
    struct auth *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->store = store;
    a->config = *config;
    a->config.scheduler_token_file = NULL;
    sem_init(&a->hash_slots, 0, HASH_SLOTS);
    int r = 0;
    if (config->scheduler_token_file)
        r = read_scheduler_token(a, config->scheduler_token_file, err);
    if (r == 0) {
        char random_pw[32];
        randombytes_buf(random_pw, sizeof(random_pw) - 1);
        for (size_t i = 0; i < sizeof(random_pw) - 1; i++)
            random_pw[i] = (char)('a' + (unsigned char)random_pw[i] % 26);
        random_pw[sizeof(random_pw) - 1] = '\0';
        if (crypto_pwhash_str_alg(a->dummy_hash, random_pw, strlen(random_pw), ARGON_OPSLIMIT,
                                  ARGON_MEMLIMIT, crypto_pwhash_ALG_ARGON2ID13) != 0)
            r = emp_error_set(err, -ENOMEM, EMP_ERR_INTERNAL, NULL,
                              "cannot compute an Argon2id hash: out of memory");
    }
    if (r < 0) {
        auth_free(a);
        return r;
    }
    *ret_auth = a;
    return 0;
}

void auth_free(struct auth *auth)
{
    if (!auth)
        return;
    sem_destroy(&auth->hash_slots);
    sodium_memzero(auth->scheduler_digest, sizeof(auth->scheduler_digest));
    free(auth);
}

/* Takes one of the hashing slots, waiting a bounded time. */
static int hash_slot_take(struct auth *a, struct emp_error *err)
{
    struct timespec deadline = time_deadline(HASH_WAIT_MS);
    while (sem_timedwait(&a->hash_slots, &deadline) != 0) {
        if (errno == EINTR)
            continue;
        return emp_error_set(err, -EBUSY, EMP_ERR_BUSY, NULL,
                             "the server is busy checking other passwords: retry in a few seconds");
    }
    return 0;
}

static int check_password(const char *password, struct emp_error *err)
{
    size_t len = strlen(password);
    if (len < AUTH_PASSWORD_MIN)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "password",
                             "password is %zu characters long: use at least %d", len,
                             AUTH_PASSWORD_MIN);
    if (len > AUTH_PASSWORD_MAX)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "password",
                             "password is %zu bytes long: at most %d are accepted", len,
                             AUTH_PASSWORD_MAX);
    return 0;
}

int auth_create_user(struct auth *auth, const char *username, const char *password,
                     int64_t *ret_created_ms, struct emp_error *err)
{
    int r = names_check_label("username", username, err);
    if (r < 0)
        return r;
    r = check_password(password, err);
    if (r < 0)
        return r;
    struct store_user user = {0};
    snprintf(user.username, sizeof(user.username), "%s", username);
    user.created_ms = time_now_ms();
    r = hash_slot_take(auth, err);
    if (r < 0)
        return r;
    char hash[crypto_pwhash_STRBYTES];
    int hr = crypto_pwhash_str_alg(hash, password, strlen(password), ARGON_OPSLIMIT, ARGON_MEMLIMIT,
                                   crypto_pwhash_ALG_ARGON2ID13);
    sem_post(&auth->hash_slots);
    if (hr != 0)
        return emp_error_set(err, -ENOMEM, EMP_ERR_BUSY, NULL,
                             "cannot hash the password now (out of memory): retry later");
    snprintf(user.password_hash, sizeof(user.password_hash), "%s", hash);
    r = store_user_create(auth->store, &user, err);
    if (r == -EEXIST)
        return emp_error_set(err, r, EMP_ERR_CONFLICT, "username",
                             "username '%s' is taken: choose another one", username);
    if (r < 0)
        return r;
    *ret_created_ms = user.created_ms;
    return 0;
}

void auth_token_digest(const char *token, char *ret_digest)
{
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, (const unsigned char *)token, strlen(token));
    sodium_bin2hex(ret_digest, AUTH_DIGEST_HEX, digest, sizeof(digest));
}

static int throttled(int64_t retry_after_s, int64_t *ret_retry_after_s, const char *username,
                     struct emp_error *err)
{
    *ret_retry_after_s = retry_after_s > 0 ? retry_after_s : 1;
    return emp_error_set(err, -EBUSY, EMP_ERR_THROTTLED, NULL,
                         "too many failed logins for '%s': try again in %lld seconds", username,
                         (long long)*ret_retry_after_s);
}

int auth_login(struct auth *auth, const char *username, const char *password, char *ret_token,
               int64_t *ret_expires_ms, int64_t *ret_retry_after_s, struct emp_error *err)
{
    static const char *const bad = "wrong username or password";
    if (!names_is_dns_label(username, NAMES_LABEL_MAX) || strlen(password) > AUTH_PASSWORD_MAX)
        return emp_error_set(err, -EACCES, EMP_ERR_UNAUTHORIZED, NULL, "%s", bad);
    int64_t failures, retry_after;
    int r = store_login_failure_get(auth->store, username, &failures, &retry_after, err);
    if (r < 0)
        return r;
    if (failures >= auth->config.login_max_failures)
        return throttled(retry_after, ret_retry_after_s, username, err);

    struct store_user user;
    r = store_user_get(auth->store, username, &user, err);
    if (r < 0 && r != -ENOENT)
        return r;
    bool exists = r == 0;
    r = hash_slot_take(auth, err);
    if (r < 0)
        return r;
    bool ok = crypto_pwhash_str_verify(exists ? user.password_hash : auth->dummy_hash, password,
                                       strlen(password)) == 0;
    sem_post(&auth->hash_slots);
    if (!ok || !exists) {
        r = store_login_failure_add(auth->store, username, (int)auth->config.login_window_s,
                                    &failures, &retry_after, err);
        if (r < 0)
            return r;
        if (failures >= auth->config.login_max_failures)
            return throttled(retry_after, ret_retry_after_s, username, err);
        return emp_error_set(err, -EACCES, EMP_ERR_UNAUTHORIZED, NULL, "%s", bad);
    }
    if (failures > 0 && (r = store_login_failure_clear(auth->store, username, err)) < 0)
        return r;

    unsigned char random[32];
    randombytes_buf(random, sizeof(random));
    char token[AUTH_TOKEN_MAX];
    memcpy(token, "emp_", 4);
    sodium_bin2base64(token + 4, sizeof(token) - 4, random, sizeof(random),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(random, sizeof(random));
    char digest[AUTH_DIGEST_HEX];
    auth_token_digest(token, digest);
    int64_t expires = time_now_ms() + auth->config.token_ttl_s * 1000;
    r = store_session_create(auth->store, digest, username, expires, err);
    if (r < 0) {
        sodium_memzero(token, sizeof(token));
        return r;
    }
    memcpy(ret_token, token, sizeof(token));
    sodium_memzero(token, sizeof(token));
    *ret_expires_ms = expires;
    return 0;
}

int auth_bearer(const char *authorization, const char **ret_token, struct emp_error *err)
{
    if (!authorization || !authorization[0])
        return emp_error_set(err, -EACCES, EMP_ERR_UNAUTHORIZED, NULL,
                             "this request needs a token: log in with `emp login` (or POST "
                             "/v1/sessions) and send 'Authorization: Bearer <token>'");
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return emp_error_set(err, -EACCES, EMP_ERR_UNAUTHORIZED, NULL,
                             "the Authorization header must be 'Bearer <token>'");
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    size_t len = strlen(token);
    if (len == 0 || len > AUTH_BEARER_MAX)
        return emp_error_set(
            err, -EACCES, EMP_ERR_UNAUTHORIZED, NULL,
            "the bearer token is empty or too long: log in again with `emp login`");
    *ret_token = token;
    return 0;
}

bool auth_is_scheduler(const struct auth *auth, const char *digest)
{
    if (!auth->has_scheduler)
        return false;
    unsigned char bin[crypto_hash_sha256_BYTES];
    size_t bin_len = 0;
    if (sodium_hex2bin(bin, sizeof(bin), digest, strlen(digest), NULL, &bin_len, NULL) != 0 ||
        bin_len != sizeof(bin))
        return false;
    return sodium_memcmp(bin, auth->scheduler_digest, sizeof(bin)) == 0;
}
