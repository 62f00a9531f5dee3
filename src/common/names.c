/* SPDX-License-Identifier: Apache-2.0 */
/* Naming rules shared by the server (which enforces them) and the CLI (which checks before
 * sending). */
#include "emp/names.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool names_is_dns_label(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len == 0 || len > max)
        return false;
    if (!(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!is_lower_alnum(s[i]) && s[i] != '-')
            return false;
    return s[len - 1] != '-';
}

bool names_is_uuid(const char *s)
{
    if (strlen(s) != NAMES_UUID_LEN)
        return false;
    for (int i = 0; i < NAMES_UUID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

/* A valid label close to s: lowercased, other characters turned into '-', runs of '-' folded,
 * trimmed, prefixed with a letter when it starts with a digit. Empty when nothing usable is left.
 */
static void suggest_label(const char *s, char *buf, size_t size)
{
    size_t out = 0;
    for (const char *p = s; *p && out + 1 < size && out < NAMES_LABEL_MAX; p++) {
        char c = (char)tolower((unsigned char)*p);
        if (!is_lower_alnum(c))
            c = '-';
        if (c == '-' && (out == 0 || buf[out - 1] == '-'))
            continue;
        if (out == 0 && c >= '0' && c <= '9') {
            if (out + 2 >= size)
                break;
            buf[out++] = 'a';
            buf[out++] = '-';
        }
        buf[out++] = c;
    }
    while (out > 0 && buf[out - 1] == '-')
        out--;
    buf[out] = '\0';
}

int names_check_label(const char *what, const char *s, struct emp_error *err)
{
    char shown[NAMES_LABEL_MAX + 8];
    size_t len = strlen(s);
    /* Quote long input shortened, so the message stays one readable line. */
    if (len > NAMES_LABEL_MAX + 4)
        snprintf(shown, sizeof(shown), "%.*s...", NAMES_LABEL_MAX, s);
    else
        snprintf(shown, sizeof(shown), "%s", s);

    if (len == 0)
        return emp_error_set(
            err, -EINVAL, EMP_ERR_INVALID_FIELD, what,
            "%s must not be empty: use lowercase letters, digits and '-', starting "
            "with a letter (for example 'songs-ms')",
            what);
    if (len > NAMES_LABEL_MAX)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, what,
                             "%s '%s' is %zu characters long: at most %d are accepted", what, shown,
                             len, NAMES_LABEL_MAX);
    if (names_is_uuid(s))
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, what,
                             "%s '%s' has the form of an app id: choose a name that does not look "
                             "like a UUID",
                             what, shown);
    if (names_is_dns_label(s, NAMES_LABEL_MAX))
        return 0;

    char suggestion[NAMES_LABEL_MAX + 1];
    suggest_label(s, suggestion, sizeof(suggestion));
    if (suggestion[0] && names_is_dns_label(suggestion, NAMES_LABEL_MAX))
        return emp_error_set(
            err, -EINVAL, EMP_ERR_INVALID_FIELD, what,
            "%s '%s' is not valid: use lowercase letters, digits and '-', starting "
            "with a letter and not ending in '-' (for example '%s')",
            what, shown, suggestion);
    return emp_error_set(
        err, -EINVAL, EMP_ERR_INVALID_FIELD, what,
        "%s '%s' is not valid: use lowercase letters, digits and '-', starting with "
        "a letter and not ending in '-' (for example 'songs-ms')",
        what, shown);
}

bool names_is_env_name(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > NAMES_ENV_MAX)
        return false;
    if (s[0] >= '0' && s[0] <= '9')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

bool names_is_reserved_env(const char *s)
{
    return strcmp(s, "KAFKAADDRESS") == 0 || strcmp(s, "PORT") == 0 || strncmp(s, "EMP_", 4) == 0;
}
