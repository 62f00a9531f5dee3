/* SPDX-License-Identifier: Apache-2.0 */
/* emp-bench-populate: fills a Redis with users and apps through the real store code, for the
 * benchmarks in bench/ that need thousands of them (creating each user through the API would
 * cost an Argon2id hash). It writes records exactly as the API does; it is not a migration tool. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "emp/error.h"
#include "emp/names.h"
#include "emp/spec.h"
#include "emp/timeutil.h"
#include "store.h"

/* The spec of every app: the example of PRODUCT.md; only the name differs. */
#define SPEC_FORMAT                                                                                \
    "{\"name\":\"%s\",\"docker_image\":\"fcribeiro/songs_ms:1.0\",\"command\":[\"true\"],"         \
    "\"stateless\":true,"                                                                          \
    "\"port\":5000,\"envs\":[{\"name\":\"DB_HOST\",\"value\":\"songs-db\"}],"                      \
    "\"quality_metrics\":[{\"metric\":\"latency\",\"values\":\"p95 < 200ms\"}]}"

struct options {
    const char *redis_url;
    const char *password_hash; /* NULL: the users exist already, add apps only */
    const char *user_prefix;
    long first_user;
    long users;
    long apps_per_user;
    long max_apps;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: emp-bench-populate --redis-url URL --users N [OPTION]...\n"
            "Creates users PREFIX-FIRST ... PREFIX-(FIRST+N-1) and APPS apps for each, through\n"
            "EMP's store code, as POST /v1/users and POST /v1/apps would.\n\n"
            "  --redis-url URL        redis://host:port or unix:///path of the store\n"
            "  --users N              how many users (1 to 1000000)\n"
            "  --first-user I         index of the first user (default 0)\n"
            "  --user-prefix P        usernames are P-I (default bench)\n"
            "  --password-hash H      create the users with this Argon2id hash; without it the\n"
            "                         users must exist and only apps are added\n"
            "  --apps-per-user N      apps per user, named app-0 ... (default 10; 0: none)\n"
            "  --max-apps-per-user N  the quota store_app_create enforces (default 100)\n");
}

static int parse_long(const char *flag, const char *text, long min, long max, long *ret)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || !text[0] || *end || v < min || v > max) {
        fprintf(stderr, "emp-bench-populate: --%s '%s' is not valid: use %ld to %ld\n", flag, text,
                min, max);
        return -EINVAL;
    }
    *ret = v;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *opt)
{
    static const struct option longopts[] = {
        {"redis-url", required_argument, NULL, 'r'},
        {"password-hash", required_argument, NULL, 'p'},
        {"user-prefix", required_argument, NULL, 'x'},
        {"first-user", required_argument, NULL, 'f'},
        {"users", required_argument, NULL, 'u'},
        {"apps-per-user", required_argument, NULL, 'a'},
        {"max-apps-per-user", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    *opt = (struct options){.user_prefix = "bench", .apps_per_user = 10, .max_apps = 100};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int r = 0;
        switch (c) {
        case 'r':
            opt->redis_url = optarg;
            break;
        case 'p':
            opt->password_hash = optarg;
            break;
        case 'x':
            opt->user_prefix = optarg;
            break;
        case 'f':
            r = parse_long("first-user", optarg, 0, 100000000, &opt->first_user);
            break;
        case 'u':
            r = parse_long("users", optarg, 1, 1000000, &opt->users);
            break;
        case 'a':
            r = parse_long("apps-per-user", optarg, 0, 100000, &opt->apps_per_user);
            break;
        case 'm':
            r = parse_long("max-apps-per-user", optarg, 1, 100000, &opt->max_apps);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
        if (r < 0)
            return r;
    }
    if (!opt->redis_url || !opt->users) {
        fprintf(stderr, "emp-bench-populate: --redis-url and --users are required\n");
        usage(stderr);
        return -EINVAL;
    }
    if (opt->password_hash && strlen(opt->password_hash) >= STORE_HASH_MAX) {
        fprintf(stderr, "emp-bench-populate: --password-hash is longer than %d characters\n",
                STORE_HASH_MAX - 1);
        return -EINVAL;
    }
    return 0;
}

/* One app of owner, with the fields apps_deploy() (src/server/apps.c) sets. */
static int create_app(struct store *store, const char *owner, const char *name, long max_apps,
                      struct emp_error *err)
{
    char text[1024];
    snprintf(text, sizeof(text), SPEC_FORMAT, name);
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    struct emp_spec *spec = NULL;
    int r = spec_parse(text, strlen(text), &spec, &errs);
    if (r < 0)
        return emp_error_set(err, r, EMP_ERR_INVALID_FIELD, NULL, "the bench spec is refused: %s",
                             errs.count ? errs.items[0].message : "unknown problem");
    struct store_app app = {0};
    uuid_t uuid;
    uuid_generate_random(uuid);
    uuid_unparse_lower(uuid, app.id);
    snprintf(app.owner, sizeof(app.owner), "%s", owner);
    snprintf(app.name, sizeof(app.name), "%s", spec->name);
    app.spec_json = spec_to_json(spec, SPEC_JSON_DEFAULT);
    if (!app.spec_json) {
        spec_free(spec);
        return -ENOMEM;
    }
    app.created_ms = app.updated_ms = time_now_ms();
    app.desired = DESIRED_RUNNING;
    app.desired_replicas = spec->replicas_initial;
    app.generation = 1;
    app.state = APP_DEPLOYING;
    r = store_app_create(store, &app, (int)max_apps, err);
    if (r == 0) {
        /* as the reconciler leaves an app that runs: what a converged app costs in Redis */
        char address[32], binding[16];
        int port = 31000 + (int)(uuid[15] % 1000);
        snprintf(address, sizeof(address), "127.0.0.1:%d", port);
        snprintf(binding, sizeof(binding), "%d", port);
        struct store_app_observed observed = {
            .state = APP_RUNNING,
            .address = address,
            .binding = binding,
            .ready_replicas = app.desired_replicas,
            .observed_generation = 1,
            .deployed = true,
        };
        r = store_app_set_observed(store, app.id, &observed, err);
    }
    free(app.spec_json);
    spec_free(spec);
    return r;
}

int main(int argc, char **argv)
{
    struct options opt;
    if (parse_options(argc, argv, &opt) < 0)
        return 2;
    struct emp_error err = {0};
    struct store *store = NULL;
    if (store_open(opt.redis_url, &store, &err) < 0) {
        fprintf(stderr, "emp-bench-populate: %s\n", err.message);
        return 1;
    }
    int status = 1;
    long users_made = 0, apps_made = 0;
    int64_t start = time_mono_ms();
    for (long i = opt.first_user; i < opt.first_user + opt.users; i++) {
        char username[NAMES_LABEL_MAX + 1];
        if (snprintf(username, sizeof(username), "%s-%ld", opt.user_prefix, i) >=
                (int)sizeof(username) ||
            !names_is_dns_label(username, NAMES_LABEL_MAX)) {
            fprintf(stderr, "emp-bench-populate: '%s-%ld' is not a valid username\n",
                    opt.user_prefix, i);
            goto out;
        }
        if (opt.password_hash) {
            struct store_user user = {.created_ms = time_now_ms()};
            snprintf(user.username, sizeof(user.username), "%s", username);
            snprintf(user.password_hash, sizeof(user.password_hash), "%s", opt.password_hash);
            int r = store_user_create(store, &user, &err);
            if (r < 0) {
                fprintf(stderr, "emp-bench-populate: cannot create user '%s': %s\n", username,
                        r == -EEXIST ? "it exists already" : err.message);
                goto out;
            }
            users_made++;
        } else {
            struct store_user user;
            int r = store_user_get(store, username, &user, &err);
            if (r < 0) {
                fprintf(stderr, "emp-bench-populate: user '%s' %s\n", username,
                        r == -ENOENT ? "does not exist: pass --password-hash to create it"
                                     : err.message);
                goto out;
            }
        }
        for (long a = 0; a < opt.apps_per_user; a++) {
            char name[NAMES_LABEL_MAX + 1];
            snprintf(name, sizeof(name), "app-%ld", a);
            int r = create_app(store, username, name, opt.max_apps, &err);
            if (r < 0) {
                fprintf(stderr, "emp-bench-populate: cannot create app '%s' of '%s': %s\n", name,
                        username,
                        r == -EEXIST     ? "it exists already"
                        : r == -EDQUOT   ? "the user has --max-apps-per-user apps"
                        : err.message[0] ? err.message
                                         : strerror(-r));
                goto out;
            }
            apps_made++;
        }
    }
    status = 0;
out:
    printf("users=%ld apps=%ld seconds=%.2f\n", users_made, apps_made,
           (double)(time_mono_ms() - start) / 1000.0);
    store_close(store);
    return status;
}
