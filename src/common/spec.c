/* SPDX-License-Identifier: Apache-2.0 */
/* The app spec: strict validation that reports every problem at once, and the canonical JSON form
 * stored with the app. Backend-specific requirements (a command for the local backend, an image for
 * Kubernetes) are the backends' to state; this module only knows the spec itself. */
#include "emp/spec.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emp/jsonutil.h"
#include "emp/names.h"

static const char *const top_fields[] = {"name",         "docker_image",    "stateless", "port",
                                         "envs",         "quality_metrics", "resources", "replicas",
                                         "health_check", "command",         NULL};
static const char *const env_fields[] = {"name", "value", NULL};
static const char *const metric_fields[] = {"metric", "values", NULL};
static const char *const resource_fields[] = {"cpu", "memory", NULL};
static const char *const replica_fields[] = {"min", "max", "initial", NULL};
static const char *const health_fields[] = {"path", NULL};

int spec_ref_next(const char *value, size_t *pos, size_t *ret_start, char *name)
{
    const char *p = strstr(value + *pos, SPEC_REF_PREFIX);
    if (!p)
        return 0;
    *ret_start = (size_t)(p - value);
    const char *n = p + strlen(SPEC_REF_PREFIX);
    const char *close = strchr(n, '}');
    size_t len = close ? (size_t)(close - n) : 0;
    if (!close || len == 0 || len > NAMES_LABEL_MAX)
        return -EINVAL;
    memcpy(name, n, len);
    name[len] = '\0';
    if (!names_is_dns_label(name, NAMES_LABEL_MAX))
        return -EINVAL;
    *pos = (size_t)(close + 1 - value);
    return 1;
}

size_t spec_refs(const struct emp_spec *spec, char (*names)[NAMES_LABEL_MAX + 1])
{
    size_t n = 0;
    for (size_t i = 0; i < spec->envs_len; i++) {
        size_t pos = 0, start;
        char name[NAMES_LABEL_MAX + 1];
        while (spec_ref_next(spec->envs[i].value, &pos, &start, name) > 0) {
            size_t j = 0;
            while (j < n && strcmp(names[j], name) != 0)
                j++;
            if (j == n && n < SPEC_REFS_MAX)
                memcpy(names[n++], name, sizeof(name));
        }
    }
    return n;
}

int spec_ref_expand(const char *value, spec_ref_resolve_fn resolve, void *ctx, char **ret,
                    struct emp_error *err)
{
    size_t cap = strlen(value) + 1, len = 0, pos = 0, start;
    char *out = malloc(cap);
    if (!out)
        return -ENOMEM;
    char name[NAMES_LABEL_MAX + 1];
    int r;
    for (;;) {
        size_t from = pos;
        r = spec_ref_next(value, &pos, &start, name);
        size_t lit = (r == 1 ? start : strlen(value + from) + from) - from;
        char address[512] = "";
        if (r == 1) {
            int rr = resolve(ctx, name, address, sizeof(address), err);
            if (rr < 0) {
                free(out);
                return rr;
            }
        } else if (r < 0) {
            free(out);
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, NULL,
                                 "'%.60s' is not a reference to an app", value + start);
        }
        size_t add = strlen(address);
        if (len + lit + add + 1 > cap) {
            cap = (len + lit + add + 1) * 2;
            char *grown = realloc(out, cap);
            if (!grown) {
                free(out);
                return -ENOMEM;
            }
            out = grown;
        }
        memcpy(out + len, value + from, lit);
        len += lit;
        memcpy(out + len, address, add);
        len += add;
        if (r == 0)
            break;
    }
    out[len] = '\0';
    *ret = out;
    return 0;
}

void spec_free(struct emp_spec *spec)
{
    if (!spec)
        return;
    free(spec->name);
    free(spec->docker_image);
    if (spec->command)
        for (size_t i = 0; i < spec->command_len; i++)
            free(spec->command[i]);
    free(spec->command);
    for (size_t i = 0; i < spec->envs_len; i++) {
        free(spec->envs[i].name);
        free(spec->envs[i].value);
    }
    free(spec->envs);
    for (size_t i = 0; i < spec->metrics_len; i++)
        free(spec->metrics[i].values);
    free(spec->metrics);
    free(spec->cpu);
    free(spec->memory);
    free(spec->health_path);
    free(spec);
}

/* ---- docker image references (the grammar of distribution/reference) ---- */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | [-]+ */
static bool valid_path_component(const char *s, size_t len)
{
    size_t i = 0;
    if (len == 0 || !is_lower_alnum(s[0]))
        return false;
    while (i < len) {
        while (i < len && is_lower_alnum(s[i]))
            i++;
        if (i == len)
            return true;
        size_t sep = i;
        if (s[i] == '.' || s[i] == '_') {
            i++;
            if (s[sep] == '_' && i < len && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < len && s[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i == len || !is_lower_alnum(s[i]))
            return false;
    }
    return true;
}

static bool valid_domain(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && s[i] != ':') {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-'))
            return false;
        i++;
    }
    if (i == 0)
        return false;
    if (i < len) {
        i++;
        if (i == len)
            return false;
        for (; i < len; i++)
            if (s[i] < '0' || s[i] > '9')
                return false;
    }
    return true;
}

static bool valid_image(const char *ref)
{
    size_t len = strlen(ref);
    if (len == 0 || len > SPEC_IMAGE_MAX)
        return false;
    const char *at = strchr(ref, '@');
    size_t name_end = at ? (size_t)(at - ref) : len;
    if (at) {
        /* digest := algorithm ":" hex, e.g. sha256:<64 hex> */
        const char *colon = strchr(at + 1, ':');
        if (!colon || colon == at + 1 || strlen(colon + 1) < 32)
            return false;
        for (const char *p = at + 1; p < colon; p++)
            if (!is_lower_alnum(*p) && *p != '+' && *p != '.' && *p != '_' && *p != '-')
                return false;
        for (const char *p = colon + 1; *p; p++)
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                return false;
    }
    /* tag: after the last ':' that follows the last '/' */
    const char *last_slash = NULL;
    for (const char *p = ref; p < ref + name_end; p++)
        if (*p == '/')
            last_slash = p;
    const char *tag = NULL;
    for (const char *p = last_slash ? last_slash : ref; p < ref + name_end; p++)
        if (*p == ':')
            tag = p;
    size_t repo_end = tag ? (size_t)(tag - ref) : name_end;
    if (tag) {
        size_t tag_len = name_end - repo_end - 1;
        if (tag_len == 0 || tag_len > 128)
            return false;
        for (size_t i = 1; i <= tag_len; i++) {
            char c = tag[i];
            bool word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_';
            if (!(word || (i > 1 && (c == '.' || c == '-'))))
                return false;
        }
    }
    /* components, the first may be a registry host */
    size_t start = 0;
    bool first = true;
    while (start <= repo_end) {
        size_t end = start;
        while (end < repo_end && ref[end] != '/')
            end++;
        const char *comp = ref + start;
        size_t comp_len = end - start;
        bool has_more = end < repo_end;
        bool domain_like = first && has_more &&
                           (memchr(comp, '.', comp_len) || memchr(comp, ':', comp_len) ||
                            (comp_len == 9 && memcmp(comp, "localhost", 9) == 0));
        if (domain_like ? !valid_domain(comp, comp_len) : !valid_path_component(comp, comp_len))
            return false;
        first = false;
        if (!has_more)
            break;
        start = end + 1;
    }
    return true;
}

/* ---- Kubernetes quantities ---- */

/* Parses "250m", "0.5", "2", "256Mi", "1G" into a value in base units times 1000 (so that milli
 * units stay integral). allow_milli: whether the 'm' suffix is meaningful (cpu) or not (memory). */
static int parse_quantity(const char *text, bool allow_milli, long double *ret_value)
{
    const char *p = text;
    const char *digits = p;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (p == digits || (p - digits == 1 && *digits == '.') || p - digits > 20)
        return -EINVAL;
    char number[32];
    memcpy(number, digits, (size_t)(p - digits));
    number[p - digits] = '\0';
    long double value = strtold(number, NULL);
    static const struct {
        const char *suffix;
        long double factor;
    } suffixes[] = {
        {"", 1.0L},
        {"m", 1e-3L},
        {"k", 1e3L},
        {"M", 1e6L},
        {"G", 1e9L},
        {"T", 1e12L},
        {"P", 1e15L},
        {"E", 1e18L},
        {"Ki", 1024.0L},
        {"Mi", 1048576.0L},
        {"Gi", 1073741824.0L},
        {"Ti", 1099511627776.0L},
        {"Pi", 1125899906842624.0L},
        {"Ei", 1152921504606846976.0L},
    };
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        if (strcmp(p, suffixes[i].suffix) == 0) {
            if (!allow_milli && strcmp(p, "m") == 0)
                return -EINVAL;
            *ret_value = value * suffixes[i].factor;
            return isfinite((double)*ret_value) ? 0 : -EINVAL;
        }
    }
    return -EINVAL;
}

/* ---- the validator ---- */

struct checker {
    struct emp_errlist *errs;
    struct emp_spec *spec;
};

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void type_error(struct checker *c, const char *field, const char *wanted, const json_t *got)
{
    emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field, "%s must be %s, not %s", field, wanted,
                    jsonu_type_name(got));
}

static void check_name(struct checker *c, const json_t *value)
{
    if (!value) {
        emp_errlist_add(c->errs, EMP_ERR_MISSING_FIELD, "name",
                        "name is missing: give the app a name of lowercase letters, digits and '-' "
                        "(for example 'songs-ms')");
        return;
    }
    if (!json_is_string(value)) {
        type_error(c, "name", "a string such as 'songs-ms'", value);
        return;
    }
    struct emp_error err = {0};
    if (names_check_label("name", json_string_value(value), &err) < 0) {
        emp_errlist_add(c->errs, err.code, err.field, "%s", err.message);
        return;
    }
    c->spec->name = xstrdup(json_string_value(value));
}

static void check_image(struct checker *c, const json_t *value)
{
    if (!value)
        return;
    if (!json_is_string(value)) {
        type_error(c, "docker_image", "a string such as 'fcribeiro/songs_ms:1.0'", value);
        return;
    }
    const char *image = json_string_value(value);
    if (strlen(image) > SPEC_IMAGE_MAX) {
        emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "docker_image",
                        "docker_image is %zu characters long: at most %d are accepted",
                        strlen(image), SPEC_IMAGE_MAX);
        return;
    }
    if (!valid_image(image)) {
        emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "docker_image",
                        "docker_image '%.200s' is not a valid image reference: use "
                        "[registry/]repository[:tag][@digest] with a lowercase repository (for "
                        "example 'fcribeiro/songs_ms:1.0')",
                        image);
        return;
    }
    c->spec->docker_image = xstrdup(image);
}

static void check_command(struct checker *c, const json_t *value)
{
    if (!value)
        return;
    if (!json_is_array(value)) {
        type_error(c, "command", "an array of strings such as [\"python3\", \"app.py\"]", value);
        return;
    }
    size_t n = json_array_size(value);
    if (n == 0 || n > SPEC_COMMAND_MAX) {
        emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "command",
                        "command has %zu elements: give from 1 to %d (the program, then its "
                        "arguments; no shell is involved)",
                        n, SPEC_COMMAND_MAX);
        return;
    }
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        const json_t *arg = json_array_get(value, i);
        char field[32];
        snprintf(field, sizeof(field), "command[%zu]", i);
        if (!json_is_string(arg)) {
            type_error(c, field, "a string", arg);
            ok = false;
        } else if (json_string_length(arg) > SPEC_ARG_MAX) {
            emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field,
                            "%s is %zu characters long: at most %d are accepted", field,
                            json_string_length(arg), SPEC_ARG_MAX);
            ok = false;
        } else if (i == 0 && json_string_length(arg) == 0) {
            emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field,
                            "command[0] is empty: name the program to run (for example 'python3')");
            ok = false;
        }
    }
    if (!ok)
        return;
    char **argv = calloc(n + 1, sizeof(*argv));
    if (!argv)
        return;
    for (size_t i = 0; i < n; i++)
        argv[i] = xstrdup(json_string_value(json_array_get(value, i)));
    c->spec->command = argv;
    c->spec->command_len = n;
}

static void check_stateless(struct checker *c, const json_t *value)
{
    c->spec->stateless = true;
    if (!value)
        return;
    if (!json_is_boolean(value)) {
        type_error(c, "stateless", "true or false", value);
        return;
    }
    c->spec->stateless = json_is_true(value);
}

static void check_port(struct checker *c, const json_t *value)
{
    if (!value) {
        emp_errlist_add(c->errs, EMP_ERR_MISSING_FIELD, "port",
                        "port is missing: give the port the app listens on, an integer from 1 to "
                        "65535 (for example 5000)");
        return;
    }
    if (!json_is_integer(value)) {
        type_error(c, "port", "an integer from 1 to 65535", value);
        return;
    }
    json_int_t port = json_integer_value(value);
    if (port < 1 || port > 65535) {
        emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "port",
                        "port %lld is out of range: use an integer from 1 to 65535",
                        (long long)port);
        return;
    }
    c->spec->port = (int)port;
}

/* The references of one env value: well formed, and at most SPEC_REFS_MAX apps in all. */
static bool check_refs(struct checker *c, const char *field, const char *value,
                       char (*refs)[NAMES_LABEL_MAX + 1], size_t *nrefs)
{
    size_t pos = 0, start;
    char name[NAMES_LABEL_MAX + 1];
    int r;
    while ((r = spec_ref_next(value, &pos, &start, name)) != 0) {
        if (r < 0) {
            emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field,
                            "%s has '%.60s', which is not a reference to an app: write "
                            "${app:NAME} with NAME one of your apps (lowercase letters, digits "
                            "and '-', at most %d characters)",
                            field, value + start, NAMES_LABEL_MAX);
            return false;
        }
        size_t i = 0;
        while (i < *nrefs && strcmp(refs[i], name) != 0)
            i++;
        if (i < *nrefs)
            continue;
        if (*nrefs == SPEC_REFS_MAX) {
            emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field,
                            "%s refers to app '%s': envs may refer to at most %d different apps",
                            field, name, SPEC_REFS_MAX);
            return false;
        }
        memcpy(refs[(*nrefs)++], name, sizeof(name));
    }
    return true;
}

static void check_envs(struct checker *c, const json_t *value)
{
    char refs[SPEC_REFS_MAX][NAMES_LABEL_MAX + 1];
    size_t nrefs = 0;
    if (!value)
        return;
    if (!json_is_array(value)) {
        type_error(c, "envs", "an array of {\"name\", \"value\"} objects", value);
        return;
    }
    size_t n = json_array_size(value);
    if (n > SPEC_ENVS_MAX) {
        emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "envs",
                        "envs has %zu entries: at most %d are accepted", n, SPEC_ENVS_MAX);
        return;
    }
    struct spec_env *envs = calloc(n ? n : 1, sizeof(*envs));
    if (!envs)
        return;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *item = json_array_get(value, i);
        bool ok = true;
        char field[64];
        char prefix[32];
        snprintf(prefix, sizeof(prefix), "envs[%zu].", i);
        if (!json_is_object(item)) {
            snprintf(field, sizeof(field), "envs[%zu]", i);
            type_error(c, field, "an object {\"name\": \"...\", \"value\": \"...\"}", item);
            continue;
        }
        if (jsonu_check_known(item, env_fields, prefix, c->errs) > 0)
            ok = false;
        const json_t *name = json_object_get(item, "name");
        const json_t *val = json_object_get(item, "value");
        snprintf(field, sizeof(field), "envs[%zu].name", i);
        if (!name) {
            emp_errlist_add(c->errs, EMP_ERR_MISSING_FIELD, field, "%s is missing", field);
            ok = false;
        } else if (!json_is_string(name)) {
            type_error(c, field, "a string", name);
            ok = false;
        } else {
            const char *s = json_string_value(name);
            if (!names_is_env_name(s)) {
                emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field,
                                "env name '%.100s' is not valid: use letters, digits, '_', '-' and "
                                "'.', not starting with a digit, at most %d characters (for "
                                "example 'DB_HOST')",
                                s, NAMES_ENV_MAX);
                ok = false;
            } else if (names_is_reserved_env(s)) {
                emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field,
                                "env name '%s' is reserved: EMP sets KAFKAADDRESS, PORT and every "
                                "name starting with EMP_ itself; choose another name",
                                s);
                ok = false;
            } else {
                for (size_t j = 0; j < kept; j++) {
                    if (strcmp(envs[j].name, s) == 0) {
                        emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field,
                                        "env name '%s' is given twice: each name may appear once",
                                        s);
                        ok = false;
                    }
                }
            }
        }
        snprintf(field, sizeof(field), "envs[%zu].value", i);
        if (!val) {
            emp_errlist_add(c->errs, EMP_ERR_MISSING_FIELD, field,
                            "%s is missing: give a string (\"\" for an empty value)", field);
            ok = false;
        } else if (!json_is_string(val)) {
            type_error(c, field, "a string (quote numbers and booleans: \"5\")", val);
            ok = false;
        } else if (json_string_length(val) > SPEC_ENV_VALUE_MAX) {
            emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field,
                            "%s is %zu bytes long: at most %d are accepted", field,
                            json_string_length(val), SPEC_ENV_VALUE_MAX);
            ok = false;
        }
        if (ok)
            ok = check_refs(c, field, json_string_value(val), refs, &nrefs);
        if (ok) {
            envs[kept].name = xstrdup(json_string_value(name));
            envs[kept].value = xstrdup(json_string_value(val));
            kept++;
        }
    }
    c->spec->envs = envs;
    c->spec->envs_len = kept;
}

static void check_metrics(struct checker *c, const json_t *value)
{
    if (!value)
        return;
    if (!json_is_array(value)) {
        type_error(c, "quality_metrics", "an array of {\"metric\", \"values\"} objects", value);
        return;
    }
    size_t n = json_array_size(value);
    if (n > QM__COUNT) {
        emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "quality_metrics",
                        "quality_metrics has %zu entries: declare each of %s at most once", n,
                        qm_known_names());
        return;
    }
    struct spec_metric *metrics = calloc(QM__COUNT, sizeof(*metrics));
    if (!metrics)
        return;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *item = json_array_get(value, i);
        char field[64];
        char prefix[40];
        snprintf(prefix, sizeof(prefix), "quality_metrics[%zu].", i);
        if (!json_is_object(item)) {
            snprintf(field, sizeof(field), "quality_metrics[%zu]", i);
            type_error(c, field, "an object {\"metric\": \"latency\", \"values\": \"p95 < 200ms\"}",
                       item);
            continue;
        }
        jsonu_check_known(item, metric_fields, prefix, c->errs);
        const json_t *metric = json_object_get(item, "metric");
        const json_t *values = json_object_get(item, "values");
        snprintf(field, sizeof(field), "quality_metrics[%zu].metric", i);
        enum qm_kind kind;
        if (!metric) {
            emp_errlist_add(c->errs, EMP_ERR_MISSING_FIELD, field, "%s is missing: name one of %s",
                            field, qm_known_names());
            continue;
        }
        if (!json_is_string(metric)) {
            type_error(c, field, "a string", metric);
            continue;
        }
        if (qm_kind_parse(json_string_value(metric), &kind) < 0) {
            emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field,
                            "quality metric '%.64s' is not known: use one of %s",
                            json_string_value(metric), qm_known_names());
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < kept; j++)
            dup = dup || metrics[j].target.kind == kind;
        if (dup) {
            emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field,
                            "quality metric '%s' is declared twice: declare each metric once",
                            qm_kind_name(kind));
            continue;
        }
        snprintf(field, sizeof(field), "quality_metrics[%zu].values", i);
        if (!values) {
            emp_errlist_add(c->errs, EMP_ERR_MISSING_FIELD, field, "%s is missing: use %s", field,
                            qm_accepted_form(kind));
            continue;
        }
        if (!json_is_string(values)) {
            type_error(c, field, "a string", values);
            continue;
        }
        struct emp_error err = {0};
        struct qm_target target;
        if (qm_parse(kind, json_string_value(values), field, &target, &err) < 0) {
            emp_errlist_add(c->errs, err.code, err.field, "%s", err.message);
            continue;
        }
        metrics[kept].values = xstrdup(json_string_value(values));
        metrics[kept].target = target;
        kept++;
    }
    c->spec->metrics = metrics;
    c->spec->metrics_len = kept;
}

static void check_resources(struct checker *c, const json_t *value)
{
    if (!value)
        return;
    if (!json_is_object(value)) {
        type_error(c, "resources", "an object {\"cpu\": \"250m\", \"memory\": \"256Mi\"}", value);
        return;
    }
    jsonu_check_known(value, resource_fields, "resources.", c->errs);
    const json_t *cpu = json_object_get(value, "cpu");
    if (cpu) {
        long double v;
        if (!json_is_string(cpu)) {
            type_error(c, "resources.cpu", "a string such as \"250m\" or \"1\"", cpu);
        } else if (json_string_length(cpu) > 32 ||
                   parse_quantity(json_string_value(cpu), true, &v) < 0) {
            emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "resources.cpu",
                            "resources.cpu '%.40s' is not a Kubernetes CPU quantity: use cores "
                            "(\"1\", \"0.5\") or millicores (\"250m\")",
                            json_string_value(cpu));
        } else if (v * 1000.0L < 1.0L || v * 1000.0L > SPEC_CPU_MAX_MILLIS) {
            emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "resources.cpu",
                            "resources.cpu '%s' is out of range: use from 1m to %d cores",
                            json_string_value(cpu), SPEC_CPU_MAX_MILLIS / 1000);
        } else {
            c->spec->cpu = xstrdup(json_string_value(cpu));
            c->spec->cpu_millis = (int64_t)ceill(v * 1000.0L);
        }
    }
    const json_t *memory = json_object_get(value, "memory");
    if (memory) {
        long double v;
        if (!json_is_string(memory)) {
            type_error(c, "resources.memory", "a string such as \"256Mi\" or \"1Gi\"", memory);
        } else if (json_string_length(memory) > 32 ||
                   parse_quantity(json_string_value(memory), false, &v) < 0) {
            emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "resources.memory",
                            "resources.memory '%.40s' is not a Kubernetes memory quantity: use "
                            "bytes with a suffix Ki, Mi, Gi, Ti (or k, M, G, T), for example "
                            "\"256Mi\"",
                            json_string_value(memory));
        } else if (v < (long double)SPEC_MEMORY_MIN || v > (long double)SPEC_MEMORY_MAX) {
            emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "resources.memory",
                            "resources.memory '%s' is out of range: use from 1Mi to 1Ti",
                            json_string_value(memory));
        } else {
            c->spec->memory = xstrdup(json_string_value(memory));
            c->spec->memory_bytes = (int64_t)ceill(v);
        }
    }
}

static bool replica_field(struct checker *c, const json_t *obj, const char *key, int *ret)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return true;
    char field[32];
    snprintf(field, sizeof(field), "replicas.%s", key);
    if (!json_is_integer(v)) {
        type_error(c, field, "an integer", v);
        return false;
    }
    json_int_t n = json_integer_value(v);
    if (n < 1 || n > SPEC_REPLICAS_MAX) {
        emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, field,
                        "%s %lld is out of range: use an integer from 1 to %d", field, (long long)n,
                        SPEC_REPLICAS_MAX);
        return false;
    }
    *ret = (int)n;
    return true;
}

static void check_replicas(struct checker *c, const json_t *value)
{
    int min = 1, max = -1, initial = -1;
    if (value && !json_is_object(value)) {
        type_error(c, "replicas", "an object {\"min\": 1, \"max\": 10, \"initial\": 2}", value);
        return;
    }
    if (value) {
        jsonu_check_known(value, replica_fields, "replicas.", c->errs);
        bool ok = replica_field(c, value, "min", &min);
        ok = replica_field(c, value, "max", &max) && ok;
        ok = replica_field(c, value, "initial", &initial) && ok;
        if (!ok)
            return;
    }
    if (initial < 0)
        initial = min;
    if (max < 0) {
        max = SPEC_DEFAULT_MAX_REPLICAS;
        if (max < min)
            max = min;
        if (max < initial)
            max = initial;
    }
    if (min > max) {
        emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "replicas.min",
                        "replicas.min %d is above replicas.max %d: min must not exceed max", min,
                        max);
        return;
    }
    if (initial < min || initial > max) {
        emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "replicas.initial",
                        "replicas.initial %d is outside min..max (%d..%d): choose a count in that "
                        "range",
                        initial, min, max);
        return;
    }
    c->spec->replicas_min = min;
    c->spec->replicas_max = max;
    c->spec->replicas_initial = initial;
}

static void check_health(struct checker *c, const json_t *value)
{
    if (!value)
        return;
    if (!json_is_object(value)) {
        type_error(c, "health_check", "an object {\"path\": \"/health\"}", value);
        return;
    }
    jsonu_check_known(value, health_fields, "health_check.", c->errs);
    const json_t *path = json_object_get(value, "path");
    if (!path) {
        emp_errlist_add(c->errs, EMP_ERR_MISSING_FIELD, "health_check.path",
                        "health_check.path is missing: give the HTTP path that answers 2xx when "
                        "the app is healthy (for example '/health')");
        return;
    }
    if (!json_is_string(path)) {
        type_error(c, "health_check.path", "a string such as '/health'", path);
        return;
    }
    const char *s = json_string_value(path);
    bool ok = s[0] == '/' && strlen(s) <= SPEC_HEALTH_PATH_MAX;
    for (const char *p = s; *p && ok; p++)
        ok = (unsigned char)*p > ' ' && (unsigned char)*p < 0x7f;
    if (!ok) {
        emp_errlist_add(c->errs, EMP_ERR_INVALID_FIELD, "health_check.path",
                        "health_check.path '%.100s' is not valid: use a path that starts with '/' "
                        "and has no spaces, at most %d characters (for example '/health')",
                        s, SPEC_HEALTH_PATH_MAX);
        return;
    }
    c->spec->health_path = xstrdup(s);
}

int spec_parse(const char *text, size_t len, struct emp_spec **ret_spec, struct emp_errlist *errs)
{
    struct emp_error err = {0};
    json_t *doc = jsonu_parse(text, len, &err);
    if (!doc) {
        emp_errlist_add(errs, err.code, NULL, "%s", err.message);
        return -EINVAL;
    }
    int r = -EINVAL;
    struct emp_spec *spec = NULL;
    if (!json_is_object(doc)) {
        emp_errlist_add(errs, EMP_ERR_INVALID_FIELD, NULL,
                        "the app spec must be a JSON object such as {\"name\": \"songs-ms\", "
                        "\"port\": 5000, ...}, not %s",
                        jsonu_type_name(doc));
        goto out;
    }
    spec = calloc(1, sizeof(*spec));
    if (!spec) {
        r = -ENOMEM;
        goto out;
    }
    size_t before = errs->count + errs->dropped;
    struct checker c = {.errs = errs, .spec = spec};
    check_name(&c, json_object_get(doc, "name"));
    check_image(&c, json_object_get(doc, "docker_image"));
    check_stateless(&c, json_object_get(doc, "stateless"));
    check_port(&c, json_object_get(doc, "port"));
    check_envs(&c, json_object_get(doc, "envs"));
    check_metrics(&c, json_object_get(doc, "quality_metrics"));
    check_resources(&c, json_object_get(doc, "resources"));
    check_replicas(&c, json_object_get(doc, "replicas"));
    check_health(&c, json_object_get(doc, "health_check"));
    check_command(&c, json_object_get(doc, "command"));
    jsonu_check_known(doc, top_fields, "", errs);
    if (!json_object_get(doc, "docker_image") && !json_object_get(doc, "command"))
        emp_errlist_add(errs, EMP_ERR_MISSING_FIELD, "docker_image",
                        "neither docker_image nor command is given: give docker_image (the image "
                        "the Kubernetes backend runs), command (the argv the local backend runs), "
                        "or both");
    if (errs->count + errs->dropped > before)
        goto out;
    *ret_spec = spec;
    spec = NULL;
    r = 0;
out:
    spec_free(spec);
    json_decref(doc);
    return r;
}

const struct spec_metric *spec_find_metric(const struct emp_spec *spec, enum qm_kind kind)
{
    for (size_t i = 0; i < spec->metrics_len; i++)
        if (spec->metrics[i].target.kind == kind)
            return &spec->metrics[i];
    return NULL;
}

int spec_set_metric(struct emp_spec *spec, const char *metric, const char *values,
                    struct emp_error *err)
{
    enum qm_kind kind;
    if (qm_kind_parse(metric, &kind) < 0)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "metric",
                             "quality metric '%.64s' is not known: use one of %s", metric,
                             qm_known_names());
    struct qm_target target;
    int r = qm_parse(kind, values, "values", &target, err);
    if (r < 0)
        return r;
    char *copy = strdup(values);
    if (!copy)
        return emp_error_set(err, -ENOMEM, EMP_ERR_INTERNAL, NULL, "out of memory");
    struct spec_metric *slot = (struct spec_metric *)spec_find_metric(spec, kind);
    if (!slot) {
        /* metrics always has room for one of each kind (see check_metrics) */
        if (!spec->metrics) {
            spec->metrics = calloc(QM__COUNT, sizeof(*spec->metrics));
            if (!spec->metrics) {
                free(copy);
                return emp_error_set(err, -ENOMEM, EMP_ERR_INTERNAL, NULL, "out of memory");
            }
        }
        slot = &spec->metrics[spec->metrics_len++];
    } else {
        free(slot->values);
    }
    slot->values = copy;
    slot->target = target;
    return 0;
}

char *spec_to_json(const struct emp_spec *spec, enum spec_json_flags flags)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "name", json_string(spec->name));
    if (spec->docker_image)
        json_object_set_new(o, "docker_image", json_string(spec->docker_image));
    if (spec->command) {
        json_t *argv = json_array();
        for (size_t i = 0; i < spec->command_len; i++)
            json_array_append_new(argv, json_string(spec->command[i]));
        json_object_set_new(o, "command", argv);
    }
    json_object_set_new(o, "stateless", json_boolean(spec->stateless));
    json_object_set_new(o, "port", json_integer(spec->port));
    if (!(flags & SPEC_JSON_OMIT_ENVS)) {
        json_t *envs = json_array();
        for (size_t i = 0; i < spec->envs_len; i++)
            json_array_append_new(envs, json_pack("{s:s, s:s}", "name", spec->envs[i].name, "value",
                                                  spec->envs[i].value));
        json_object_set_new(o, "envs", envs);
    }
    json_t *metrics = json_array();
    for (size_t i = 0; i < spec->metrics_len; i++)
        json_array_append_new(metrics, json_pack("{s:s, s:s}", "metric",
                                                 qm_kind_name(spec->metrics[i].target.kind),
                                                 "values", spec->metrics[i].values));
    json_object_set_new(o, "quality_metrics", metrics);
    if (spec->cpu || spec->memory) {
        json_t *res = json_object();
        if (spec->cpu)
            json_object_set_new(res, "cpu", json_string(spec->cpu));
        if (spec->memory)
            json_object_set_new(res, "memory", json_string(spec->memory));
        json_object_set_new(o, "resources", res);
    }
    json_object_set_new(o, "replicas",
                        json_pack("{s:i, s:i, s:i}", "min", spec->replicas_min, "max",
                                  spec->replicas_max, "initial", spec->replicas_initial));
    if (spec->health_path)
        json_object_set_new(o, "health_check", json_pack("{s:s}", "path", spec->health_path));
    char *text = jsonu_dump(o);
    json_decref(o);
    return text;
}

int spec_json_replica_bounds(const char *canonical, int *ret_min, int *ret_max)
{
    /* spec_to_json writes "replicas":{"min":N,"max":N,...} once, at the top level; inside a JSON
     * string a quote is escaped, so this text cannot occur anywhere else */
    static const char marker[] = "\"replicas\":{\"min\":";
    const char *p = strstr(canonical, marker);
    int min, max;
    if (!p || sscanf(p + sizeof(marker) - 1, "%d,\"max\":%d", &min, &max) != 2)
        return -EINVAL;
    *ret_min = min;
    *ret_max = max;
    return 0;
}
