/* SPDX-License-Identifier: Apache-2.0 */
/* Accounts and credentials (REQ-1, REQ-2): Argon2id password hashes, bearer tokens kept only as
 * SHA-256 digests, login throttling, and the scheduler's credential. Decides who a request is; what
 * that caller may do is the API's business. */
#ifndef EMP_AUTH_H
#define EMP_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "emp/error.h"
#include "emp/names.h"
#include "store.h"

#define AUTH_TOKEN_MAX    64 /* "emp_" + 43 base64url characters + NUL */
#define AUTH_DIGEST_HEX   65 /* SHA-256 in hex + NUL */
#define AUTH_PASSWORD_MIN 8
#define AUTH_PASSWORD_MAX 1024
#define AUTH_BEARER_MAX   512 /* longest Authorization value looked at */

struct auth_config {
    int64_t token_ttl_s;
    int login_max_failures;
    int64_t login_window_s;
    const char *scheduler_token_file; /* NULL: no scheduler role */
};

enum auth_role { ROLE_NONE, ROLE_DEVELOPER, ROLE_SCHEDULER };

struct auth_principal {
    enum auth_role role;
    char username[NAMES_LABEL_MAX + 1]; /* developers only */
    int64_t expires_ms;                 /* developers only */
};

struct auth;

/* Reads the scheduler token file, if any, keeping only its digest. Returns 0, or -errno with err
 * saying what is wrong with the file. Free with auth_free(). */
int auth_new(struct store *store, const struct auth_config *config, struct auth **ret_auth,
             struct emp_error *err);
void auth_free(struct auth *auth);

/* REQ-1. -EEXIST (err: conflict) when the username is taken. */
int auth_create_user(struct auth *auth, const char *username, const char *password,
                     int64_t *ret_created_ms, struct emp_error *err);

/* REQ-2. On success writes a new token (AUTH_TOKEN_MAX bytes) and its expiry. Wrong credentials:
 * -EACCES (unauthorized); too many failures: -EBUSY (too_many_requests) with *ret_retry_after_s. */
int auth_login(struct auth *auth, const char *username, const char *password, char *ret_token,
               int64_t *ret_expires_ms, int64_t *ret_retry_after_s, struct emp_error *err);

/* The hex SHA-256 digest of a token, as sessions are keyed (AUTH_DIGEST_HEX bytes). */
void auth_token_digest(const char *token, char *ret_digest);

/* Extracts the token from an Authorization header value ("Bearer <token>"). Returns 0, or -EACCES
 * with err saying what is wrong. */
int auth_bearer(const char *authorization, const char **ret_token, struct emp_error *err);

/* True if digest (auth_token_digest of the bearer token) is the scheduler token's, compared in
 * constant time. */
bool auth_is_scheduler(const struct auth *auth, const char *digest);

#endif
