/* SPDX-License-Identifier: Apache-2.0 */
/* The credentials file, $XDG_CONFIG_HOME/emp/credentials.json: the token saved for each server and
 * which server is "current". Reading, changing in memory, and rewriting it atomically with mode
 * 0600 in a 0700 directory. It does not talk to any server. */
#ifndef EMP_CLI_CREDENTIALS_H
#define EMP_CLI_CREDENTIALS_H

#include <stddef.h>

#include "failure.h"

#define CRED_FILE_MAX (1024 * 1024) /* a larger credentials file is refused */
#define CRED_PATH_MAX 4096

/* The file's path: $XDG_CONFIG_HOME/emp/credentials.json when config_home is an absolute path,
 * else $HOME/.config/emp/credentials.json. Either may be NULL. Writes ret_path (CRED_PATH_MAX
 * bytes). Returns 0, or -ENOENT with a failure when neither gives a place. */
int cred_path(const char *config_home, const char *home, char *ret_path, struct failure *fail);

struct cred_store;

/* Reads the file at path; a missing file is an empty store. Returns 0, or -errno with a failure
 * that names the file (unreadable, too large, not the expected JSON). Free with cred_free(). */
int cred_load(const char *path, struct cred_store **ret_store, struct failure *fail);
/* Accepts NULL. */
void cred_free(struct cred_store *store);

/* The "current" server, or NULL. Owned by the store. */
const char *cred_current(const struct cred_store *store);

struct cred_entry {
    const char *username; /* NULL when absent */
    const char *token;
    const char *expires_at; /* NULL when absent */
};

/* The entry saved for server (a normalised URL). The strings are owned by the store and valid until
 * it changes. Returns 0, or -ENOENT when no token is saved for server. */
int cred_get(const struct cred_store *store, const char *server, struct cred_entry *ret_entry);

/* Saves a token for server and makes server the current one. The strings are copied. expires_at
 * may be NULL. Returns 0 or -ENOMEM. */
int cred_set(struct cred_store *store, const char *server, const char *username, const char *token,
             const char *expires_at);

/* Forgets the token of server; "current" stays as it is. Returns 0, or -ENOENT when there was none.
 */
int cred_forget(struct cred_store *store, const char *server);

/* Writes the store to path: creates the directory (mode 0700) if needed, writes a temporary file
 * (mode 0600) in it, flushes it to disk and renames it over path, so a reader sees either the old
 * or the new file, never a part. Returns 0, or -errno with a failure naming the path. */
int cred_save(const struct cred_store *store, const char *path, struct failure *fail);

#endif
