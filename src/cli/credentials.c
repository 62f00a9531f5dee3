/* SPDX-License-Identifier: Apache-2.0 */
/* The credentials file as a JSON document kept in memory: keys the CLI does not know are kept, so a
 * newer emp's additions survive a rewrite by this one. */
#include "credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "emp/textio.h"

#include "emp/jsonutil.h"

#define FILE_NAME "credentials.json"

struct cred_store {
    json_t *doc; /* {"current": ..., "servers": {URL: {"username", "token", "expires_at"}}} */
};

int cred_path(const char *config_home, const char *home, char *ret_path, struct failure *fail)
{
    int len;
    /* the XDG base directory spec: a relative XDG_CONFIG_HOME is to be ignored */
    if (config_home && config_home[0] == '/')
        len = snprintf(ret_path, CRED_PATH_MAX, "%s/emp/" FILE_NAME, config_home);
    else if (home && home[0] == '/')
        len = snprintf(ret_path, CRED_PATH_MAX, "%s/.config/emp/" FILE_NAME, home);
    else
        return failure_failed(fail, -ENOENT,
                              "cannot tell where to keep credentials: set HOME or "
                              "XDG_CONFIG_HOME to an absolute path");
    if (len >= CRED_PATH_MAX)
        return failure_failed(fail, -ENAMETOOLONG,
                              "the credentials path is longer than %d bytes: set XDG_CONFIG_HOME "
                              "to a shorter path",
                              CRED_PATH_MAX - 1);
    return 0;
}

static int new_store(json_t *doc, struct cred_store **ret_store)
{
    struct cred_store *store = calloc(1, sizeof(*store));
    if (!store) {
        json_decref(doc);
        return -ENOMEM;
    }
    store->doc = doc;
    *ret_store = store;
    return 0;
}

/* Reads at most CRED_FILE_MAX bytes of an open regular file into a malloc'd buffer. */
static int read_all(int fd, const char *path, char **ret_text, size_t *ret_len,
                    struct failure *fail)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return failure_failed(fail, -errno, "cannot read the credentials file %s: %s", path,
                              strerror(errno));
    if (!S_ISREG(st.st_mode))
        return failure_failed(fail, -EINVAL,
                              "the credentials file %s is not a regular file: remove it and log "
                              "in again",
                              path);
    if (st.st_size > CRED_FILE_MAX)
        return failure_failed(fail, -EFBIG,
                              "the credentials file %s is larger than %d bytes: remove it and "
                              "log in again",
                              path, CRED_FILE_MAX);
    char *text = malloc((size_t)st.st_size + 1);
    if (!text)
        return failure_failed(fail, -ENOMEM, "out of memory");
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, text + len, (size_t)st.st_size + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            free(text);
            return failure_failed(fail, -saved, "cannot read the credentials file %s: %s", path,
                                  strerror(saved));
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > (size_t)st.st_size) { /* it grew while we read it */
            free(text);
            return failure_failed(fail, -EAGAIN,
                                  "the credentials file %s changed while it was read: try again",
                                  path);
        }
    }
    text[len] = '\0';
    *ret_text = text;
    *ret_len = len;
    return 0;
}

static bool valid_shape(const json_t *doc)
{
    if (!json_is_object(doc))
        return false;
    const json_t *current = json_object_get(doc, "current");
    if (current && !json_is_string(current) && !json_is_null(current))
        return false;
    const json_t *servers = json_object_get(doc, "servers");
    if (servers && !json_is_object(servers))
        return false;
    return true;
}

int cred_load(const char *path, struct cred_store **ret_store, struct failure *fail)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 && errno == ENOENT) {
        json_t *empty = json_object();
        if (!empty || new_store(empty, ret_store) < 0)
            return failure_failed(fail, -ENOMEM, "out of memory");
        return 0;
    }
    if (fd < 0)
        return failure_failed(fail, -errno, "cannot open the credentials file %s: %s", path,
                              strerror(errno));
    char *text = NULL;
    size_t len = 0;
    int r = read_all(fd, path, &text, &len, fail);
    close(fd);
    if (r < 0)
        return r;
    struct emp_error err = {0};
    json_t *doc = len ? jsonu_parse(text, len, &err) : json_object();
    free(text);
    if (!doc)
        return failure_failed(fail, -EINVAL,
                              "the credentials file %s is not valid JSON (%s): fix it, or remove "
                              "it and log in again",
                              path, err.message);
    if (!valid_shape(doc)) {
        json_decref(doc);
        return failure_failed(fail, -EINVAL,
                              "the credentials file %s does not have the shape {\"current\": URL, "
                              "\"servers\": {URL: {...}}}: fix it, or remove it and log in again",
                              path);
    }
    if (new_store(doc, ret_store) < 0)
        return failure_failed(fail, -ENOMEM, "out of memory");
    return 0;
}

void cred_free(struct cred_store *store)
{
    if (!store)
        return;
    json_decref(store->doc);
    free(store);
}

const char *cred_current(const struct cred_store *store)
{
    const char *current = json_string_value(json_object_get(store->doc, "current"));
    return current && current[0] ? current : NULL;
}

int cred_get(const struct cred_store *store, const char *server, struct cred_entry *ret_entry)
{
    const json_t *entry = json_object_get(json_object_get(store->doc, "servers"), server);
    const char *token = json_string_value(json_object_get(entry, "token"));
    if (!token || !token[0])
        return -ENOENT;
    ret_entry->token = token;
    ret_entry->username = json_string_value(json_object_get(entry, "username"));
    ret_entry->expires_at = json_string_value(json_object_get(entry, "expires_at"));
    return 0;
}

int cred_set(struct cred_store *store, const char *server, const char *username, const char *token,
             const char *expires_at)
{
    json_t *servers = json_object_get(store->doc, "servers");
    if (!servers) {
        servers = json_object();
        if (!servers || json_object_set_new(store->doc, "servers", servers) < 0)
            return -ENOMEM;
    }
    json_t *entry = json_pack("{s:s, s:s}", "username", username, "token", token);
    if (!entry)
        return -ENOMEM;
    if (expires_at && json_object_set_new(entry, "expires_at", json_string(expires_at)) < 0) {
        json_decref(entry);
        return -ENOMEM;
    }
    if (json_object_set_new(servers, server, entry) < 0)
        return -ENOMEM;
    if (json_object_set_new(store->doc, "current", json_string(server)) < 0)
        return -ENOMEM;
    return 0;
}

int cred_forget(struct cred_store *store, const char *server)
{
    json_t *servers = json_object_get(store->doc, "servers");
    if (!json_object_get(servers, server))
        return -ENOENT;
    json_object_del(servers, server);
    return 0;
}

/* mkdir -p for the directories above the file, the last one (ours) with mode 0700. */
static int make_dirs(const char *path, struct failure *fail)
{
    char dir[CRED_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            return failure_failed(fail, -errno, "cannot create the directory %s: %s", dir,
                                  strerror(errno));
        *p = saved;
        if (saved == '\0')
            break;
    }
    /* the emp directory holds tokens: nobody else may list it */
    struct stat st;
    if (stat(dir, &st) == 0 && (st.st_mode & 077) && chmod(dir, 0700) < 0)
        return failure_failed(fail, -errno, "cannot make %s private (mode 0700): %s", dir,
                              strerror(errno));
    return 0;
}

static void sync_dir(const char *path)
{
    char dir[CRED_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return;
    *slash = '\0';
    int fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    fsync(fd); /* best effort: the rename is already visible to readers */
    close(fd);
}

int cred_save(const struct cred_store *store, const char *path, struct failure *fail)
{
    int r = make_dirs(path, fail);
    if (r < 0)
        return r;
    char *text = json_dumps(store->doc, JSON_INDENT(2));
    if (!text)
        return failure_failed(fail, -ENOMEM, "out of memory");
    char tmp[CRED_PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        r = failure_failed(fail, -errno, "cannot write the credentials file %s: %s", path,
                           strerror(errno));
        goto out;
    }
    if (fchmod(fd, 0600) < 0 || (r = textio_write_all(fd, text, strlen(text))) < 0 ||
        (r = textio_write_all(fd, "\n", 1)) < 0 || fsync(fd) < 0) {
        r = r < 0 ? r : -errno;
        close(fd);
        unlink(tmp);
        r = failure_failed(fail, r, "cannot write the credentials file %s: %s", path, strerror(-r));
        goto out;
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        r = -errno;
        unlink(tmp);
        r = failure_failed(fail, r, "cannot write the credentials file %s: %s", path, strerror(-r));
        goto out;
    }
    sync_dir(path);
    r = 0;
out:
    explicit_bzero(text, strlen(text));
    free(text);
    return r;
}
