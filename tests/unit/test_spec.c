/* SPDX-License-Identifier: Apache-2.0 */
/* The app spec: the thesis' JSON is accepted as it is, defaults are filled in, and every kind of
 * mistake is named with the field and what would be accepted (REQ-4). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "emp/spec.h"

static const char thesis_spec[] =
    "{\"name\": \"songs-ms\", \"docker_image\": \"fcribeiro/songs_ms:1.0\", \"stateless\": true,"
    " \"port\": 5000, \"envs\": [{\"name\": \"DB_HOST\", \"value\": \"songs-db\"}],"
    " \"quality_metrics\": [{\"metric\": \"latency\", \"values\": \"p95 < 200ms\"},"
    " {\"metric\": \"availability\", \"values\": \">= 99.9%\"}]}";

static struct emp_spec *parse_ok(const char *text)
{
    struct emp_spec *spec = NULL;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    if (spec_parse(text, strlen(text), &spec, &errs) != 0)
        fail_msg("refused: %s (%s)", errs.count ? errs.items[0].message : "?", text);
    return spec;
}

/* Parses text, expects a refusal whose problems include one for field whose message contains
 * needle. */
static void refused(const char *text, const char *field, const char *needle)
{
    struct emp_spec *spec = NULL;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    if (spec_parse(text, strlen(text), &spec, &errs) == 0) {
        spec_free(spec);
        fail_msg("accepted: %s", text);
    }
    assert_null(spec);
    for (size_t i = 0; i < errs.count; i++)
        if (strcmp(errs.items[i].field, field) == 0 && strstr(errs.items[i].message, needle))
            return;
    for (size_t i = 0; i < errs.count; i++)
        print_message("  problem: [%s] %s\n", errs.items[i].field, errs.items[i].message);
    fail_msg("no problem for field '%s' mentioning '%s' in: %s", field, needle, text);
}

static void test_thesis_spec(void **state)
{
    struct emp_spec *spec = parse_ok(thesis_spec);
    assert_string_equal(spec->name, "songs-ms");
    assert_string_equal(spec->docker_image, "fcribeiro/songs_ms:1.0");
    assert_true(spec->stateless);
    assert_int_equal(spec->port, 5000);
    assert_int_equal(spec->envs_len, 1);
    assert_string_equal(spec->envs[0].name, "DB_HOST");
    assert_string_equal(spec->envs[0].value, "songs-db");
    assert_int_equal(spec->metrics_len, 2);
    assert_int_equal(spec->metrics[0].target.kind, QM_LATENCY);
    assert_int_equal(spec->metrics[0].target.percentile, 95);
    /* defaults of EMP's additions */
    assert_int_equal(spec->replicas_min, 1);
    assert_int_equal(spec->replicas_initial, 1);
    assert_int_equal(spec->replicas_max, SPEC_DEFAULT_MAX_REPLICAS);
    assert_null(spec->command);
    assert_null(spec->health_path);
    spec_free(spec);
}

static void test_full_spec_and_round_trip(void **state)
{
    const char *text =
        "{\"name\":\"api\",\"command\":[\"python3\",\"app.py\",\"\"],\"port\":8000,"
        "\"stateless\":false,\"resources\":{\"cpu\":\"250m\",\"memory\":\"256Mi\"},"
        "\"replicas\":{\"min\":2,\"max\":5,\"initial\":3},\"health_check\":{\"path\":\"/health\"},"
        "\"docker_image\":\"registry.example.com:5000/team/api@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}";
    struct emp_spec *spec = parse_ok(text);
    assert_false(spec->stateless);
    assert_int_equal(spec->command_len, 3);
    assert_string_equal(spec->command[2], "");
    assert_null(spec->command[3]);
    assert_int_equal(spec->cpu_millis, 250);
    assert_int_equal(spec->memory_bytes, 256LL * 1024 * 1024);
    assert_int_equal(spec->replicas_min, 2);
    assert_int_equal(spec->replicas_initial, 3);
    assert_string_equal(spec->health_path, "/health");

    /* the canonical form parses back to the same spec, and is stable */
    char *canonical = spec_to_json(spec, SPEC_JSON_DEFAULT);
    struct emp_spec *again = parse_ok(canonical);
    char *canonical_again = spec_to_json(again, SPEC_JSON_DEFAULT);
    assert_string_equal(canonical, canonical_again);
    assert_non_null(strstr(canonical, "\"resources\":{\"cpu\":\"250m\",\"memory\":\"256Mi\"}"));
    free(canonical);
    free(canonical_again);
    spec_free(again);

    /* the scheduler's view has no envs */
    char *no_envs = spec_to_json(spec, SPEC_JSON_OMIT_ENVS);
    assert_null(strstr(no_envs, "envs"));
    free(no_envs);
    spec_free(spec);
}

static void test_replica_defaults(void **state)
{
    struct emp_spec *spec = parse_ok("{\"name\":\"a\",\"command\":[\"x\"],\"port\":1,"
                                     "\"replicas\":{\"initial\":20}}");
    assert_int_equal(spec->replicas_min, 1);
    assert_int_equal(spec->replicas_initial, 20);
    assert_int_equal(spec->replicas_max, 20);
    spec_free(spec);
    spec = parse_ok("{\"name\":\"a\",\"command\":[\"x\"],\"port\":1,\"replicas\":{\"min\":3}}");
    assert_int_equal(spec->replicas_initial, 3);
    assert_int_equal(spec->replicas_max, 10);
    spec_free(spec);
}

#define BASE "\"name\":\"a\",\"command\":[\"x\"],\"port\":80"

static void test_refusals(void **state)
{
    refused("{\"name\":\"a\"", "", "not valid JSON");
    refused("[1,2]", "", "must be a JSON object");
    refused("7", "", "not an integer");
    refused("{\"name\":\"a\",\"name\":\"b\",\"command\":[\"x\"],\"port\":1}", "", "duplicate");
    refused("{\"command\":[\"x\"],\"port\":80}", "name", "missing");
    refused("{\"name\":\"songs_ms\",\"command\":[\"x\"],\"port\":80}", "name", "'songs-ms'");
    refused("{\"name\":5,\"command\":[\"x\"],\"port\":80}", "name", "not an integer");
    refused("{\"name\":\"a\",\"command\":[\"x\"]}", "port", "missing");
    refused("{\"name\":\"a\",\"command\":[\"x\"],\"port\":0}", "port", "1 to 65535");
    refused("{\"name\":\"a\",\"command\":[\"x\"],\"port\":65536}", "port", "1 to 65535");
    refused("{\"name\":\"a\",\"command\":[\"x\"],\"port\":\"80\"}", "port", "not a string");
    refused("{\"name\":\"a\",\"command\":[\"x\"],\"port\":80.5}", "port", "integer");
    refused("{\"name\":\"a\",\"port\":80}", "docker_image", "command");
    refused("{" BASE ",\"docker_image\":\"Bad/Image\"}", "docker_image", "lowercase");
    refused("{" BASE ",\"docker_image\":\"a::b\"}", "docker_image", "image reference");
    refused("{" BASE ",\"stateless\":\"yes\"}", "stateless", "true or false");
    refused("{\"name\":\"a\",\"command\":[],\"port\":80}", "command", "from 1 to");
    refused("{\"name\":\"a\",\"command\":[\"\"],\"port\":80}", "command[0]", "empty");
    refused("{\"name\":\"a\",\"command\":\"python3 app.py\",\"port\":80}", "command",
            "array of strings");
    refused("{\"name\":\"a\",\"command\":[\"x\",3],\"port\":80}", "command[1]", "a string");
    refused("{" BASE ",\"envs\":{}}", "envs", "array");
    refused("{" BASE ",\"envs\":[{\"name\":\"1X\",\"value\":\"v\"}]}", "envs[0].name", "not valid");
    refused("{" BASE ",\"envs\":[{\"name\":\"PORT\",\"value\":\"1\"}]}", "envs[0].name",
            "reserved");
    refused("{" BASE ",\"envs\":[{\"name\":\"EMP_X\",\"value\":\"1\"}]}", "envs[0].name",
            "reserved");
    refused("{" BASE ",\"envs\":[{\"name\":\"KAFKAADDRESS\",\"value\":\"1\"}]}", "envs[0].name",
            "reserved");
    refused("{" BASE
            ",\"envs\":[{\"name\":\"A\",\"value\":\"1\"},{\"name\":\"A\",\"value\":\"2\"}]}",
            "envs[1].name", "twice");
    refused("{" BASE ",\"envs\":[{\"name\":\"A\",\"value\":1}]}", "envs[0].value", "a string");
    refused("{" BASE ",\"envs\":[{\"name\":\"A\"}]}", "envs[0].value", "missing");
    refused("{" BASE ",\"envs\":[{\"name\":\"A\",\"value\":\"1\",\"secret\":true}]}",
            "envs[0].secret", "accepted fields of envs[0] are name, value");
    refused("{" BASE ",\"quality_metrics\":[{\"metric\":\"cpu\",\"values\":\"< 70%\"}]}",
            "quality_metrics[0].metric", "latency, throughput, availability, error_rate");
    refused("{" BASE ",\"quality_metrics\":[{\"metric\":\"latency\",\"values\":\"fast\"}]}",
            "quality_metrics[0].values", "p95 < 200ms");
    refused("{" BASE ",\"quality_metrics\":[{\"metric\":\"latency\",\"values\":\"p95<1s\"},"
            "{\"metric\":\"latency\",\"values\":\"p99<2s\"}]}",
            "quality_metrics[1].metric", "twice");
    refused("{" BASE ",\"quality_metrics\":[{\"metric\":\"throughput\"}]}",
            "quality_metrics[0].values", "N rps");
    refused("{" BASE ",\"resources\":{\"cpu\":\"lots\"}}", "resources.cpu", "millicores");
    refused("{" BASE ",\"resources\":{\"cpu\":\"0.0001\"}}", "resources.cpu", "out of range");
    refused("{" BASE ",\"resources\":{\"memory\":\"256MB\"}}", "resources.memory", "Mi");
    refused("{" BASE ",\"resources\":{\"memory\":\"10m\"}}", "resources.memory", "Mi");
    refused("{" BASE ",\"resources\":{\"memory\":\"2Ti\"}}", "resources.memory", "1Mi to 1Ti");
    refused("{" BASE ",\"resources\":{\"gpu\":\"1\"}}", "resources.gpu", "cpu, memory");
    refused("{" BASE ",\"replicas\":{\"min\":5,\"max\":2}}", "replicas.min", "must not exceed");
    refused("{" BASE ",\"replicas\":{\"min\":1,\"max\":3,\"initial\":4}}", "replicas.initial",
            "1..3");
    refused("{" BASE ",\"replicas\":{\"min\":0}}", "replicas.min", "1 to 1000");
    refused("{" BASE ",\"replicas\":{\"max\":1001}}", "replicas.max", "1 to 1000");
    refused("{" BASE ",\"replicas\":{\"max\":\"3\"}}", "replicas.max", "an integer");
    refused("{" BASE ",\"health_check\":{\"path\":\"health\"}}", "health_check.path",
            "starts with '/'");
    refused("{" BASE ",\"health_check\":{\"path\":\"/a b\"}}", "health_check.path", "no spaces");
    refused("{" BASE ",\"health_check\":{}}", "health_check.path", "missing");
    refused("{" BASE ",\"replica\":3}", "replica", "the accepted fields are name, docker_image");
}

static void test_every_problem_at_once(void **state)
{
    const char *text = "{\"name\":\"Bad_Name\",\"port\":0,\"envs\":[{\"name\":\"PORT\",\"value\":"
                       "\"1\"}],\"colour\":\"red\"}";
    struct emp_spec *spec = NULL;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    assert_int_equal(spec_parse(text, strlen(text), &spec, &errs), -EINVAL);
    /* name, port, the env, the unknown field, and no image/command */
    assert_int_equal(errs.count, 5);
    assert_string_equal(errs.items[0].field, "name");
}

static void test_bounds(void **state)
{
    /* 129 envs */
    size_t size = 64 * 1024;
    char *text = malloc(size);
    size_t used = (size_t)snprintf(text, size, "{" BASE ",\"envs\":[");
    for (int i = 0; i < 129; i++)
        used += (size_t)snprintf(text + used, size - used, "%s{\"name\":\"V%d\",\"value\":\"x\"}",
                                 i ? "," : "", i);
    snprintf(text + used, size - used, "]}");
    refused(text, "envs", "at most 128");
    free(text);
}

static void test_set_metric(void **state)
{
    struct emp_spec *spec = parse_ok(thesis_spec);
    struct emp_error err = {0};
    assert_int_equal(spec_set_metric(spec, "latency", "p99 < 1s", &err), 0);
    assert_int_equal(spec->metrics_len, 2);
    assert_int_equal(spec_find_metric(spec, QM_LATENCY)->target.percentile, 99);
    assert_int_equal(spec_set_metric(spec, "throughput", "50 rps", &err), 0);
    assert_int_equal(spec->metrics_len, 3);
    assert_int_equal(spec_set_metric(spec, "cpu", "< 70%", &err), -EINVAL);
    assert_non_null(strstr(err.message, "latency, throughput"));
    emp_error_clear(&err);
    assert_int_equal(spec_set_metric(spec, "error_rate", "lots", &err), -EINVAL);
    assert_int_equal(spec->metrics_len, 3); /* unchanged */
    char *json = spec_to_json(spec, SPEC_JSON_DEFAULT);
    assert_non_null(strstr(json, "{\"metric\":\"throughput\",\"values\":\"50 rps\"}"));
    free(json);
    spec_free(spec);
}

/* spec_ref_resolve_fn of the tests: "NAME.test:80", or a failure for "gone". */
static int resolve_test(void *ctx, const char *name, char *buf, size_t size, struct emp_error *err)
{
    (*(int *)ctx)++;
    if (strcmp(name, "gone") == 0)
        return emp_error_set(err, -ENOENT, EMP_ERR_NOT_FOUND, NULL, "no app %s", name);
    snprintf(buf, size, "%s.test:80", name);
    return 0;
}

static void test_app_references(void **state)
{
    (void)state;
    struct emp_spec *spec =
        parse_ok("{\"name\":\"gateway\",\"docker_image\":\"x:1\",\"port\":80,\"envs\":["
                 "{\"name\":\"SONGS_URL\",\"value\":\"${app:songs}\"},"
                 "{\"name\":\"BOTH\",\"value\":\"http://${app:users}/v1,${app:songs};${app\"},"
                 "{\"name\":\"PLAIN\",\"value\":\"${HOME} and $app:x}\"}]}");
    char names[SPEC_REFS_MAX][NAMES_LABEL_MAX + 1];
    assert_int_equal(spec_refs(spec, names), 2);
    assert_string_equal(names[0], "songs");
    assert_string_equal(names[1], "users");
    struct emp_error err = {0};
    char *out = NULL;
    int calls = 0;
    assert_int_equal(spec_ref_expand(spec->envs[1].value, resolve_test, &calls, &out, &err), 0);
    assert_string_equal(out, "http://users.test:80/v1,songs.test:80;${app");
    free(out);
    assert_int_equal(spec_ref_expand(spec->envs[2].value, resolve_test, &calls, &out, &err), 0);
    assert_string_equal(out, "${HOME} and $app:x}");
    free(out);
    assert_int_equal(calls, 2);
    assert_int_equal(spec_ref_expand("a ${app:gone} b", resolve_test, &calls, &out, &err), -ENOENT);
    assert_string_equal(err.message, "no app gone");
    /* the spec keeps what the user wrote */
    char *json = spec_to_json(spec, SPEC_JSON_DEFAULT);
    assert_non_null(strstr(json, "${app:songs}"));
    free(json);
    spec_free(spec);

    refused("{\"name\":\"a\",\"docker_image\":\"x:1\",\"port\":80,\"envs\":["
            "{\"name\":\"U\",\"value\":\"${app:Songs}\"}]}",
            "envs[0].value", "not a reference to an app");
    refused("{\"name\":\"a\",\"docker_image\":\"x:1\",\"port\":80,\"envs\":["
            "{\"name\":\"U\",\"value\":\"x ${app:songs\"}]}",
            "envs[0].value", "write ${app:NAME}");
    refused("{\"name\":\"a\",\"docker_image\":\"x:1\",\"port\":80,\"envs\":["
            "{\"name\":\"U\",\"value\":\"${app:}\"}]}",
            "envs[0].value", "not a reference");
    /* at most SPEC_REFS_MAX different apps */
    char text[8192] = "{\"name\":\"a\",\"docker_image\":\"x:1\",\"port\":80,\"envs\":[";
    for (int i = 0; i <= SPEC_REFS_MAX; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text),
                 "%s{\"name\":\"E%d\",\"value\":\"${app:s%d}\"}", i ? "," : "", i, i);
    strcat(text, "]}");
    refused(text, "envs[32].value", "at most 32 different apps");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thesis_spec),
        cmocka_unit_test(test_full_spec_and_round_trip),
        cmocka_unit_test(test_replica_defaults),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_every_problem_at_once),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_set_metric),
        cmocka_unit_test(test_app_references),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
