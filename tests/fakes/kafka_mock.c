/* SPDX-License-Identifier: Apache-2.0 */
/* emp-kafka-mock: a Kafka cluster for tests, librdkafka's mock cluster (a real Kafka protocol peer:
 * produce, fetch, consumer groups, offset commits) in a process of its own. It prints the bootstrap
 * address as its first line on stdout and serves until SIGTERM or SIGINT, or until its stdin (when
 * that is a pipe, socket or terminal) reaches end of file, so a test that dies does not leave it
 * behind. Not a Kafka for anything but tests: the data lives in memory and nothing is replicated.
 *
 *   emp-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_BROKERS    32
#define MAX_PARTITIONS 1024
#define MAX_TOPICS     64
#define MAX_TOPIC_NAME 249 /* Kafka's own limit */

struct topic_spec {
    char name[MAX_TOPIC_NAME + 1];
    int partitions;
};

struct options {
    int brokers;
    size_t topic_count;
    struct topic_spec topics[MAX_TOPICS];
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: emp-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...\n"
            "  --brokers N              brokers in the cluster (1-%d, default 1)\n"
            "  --topic NAME:PARTITIONS  create a topic (repeatable; other topics are\n"
            "                           created on first use, as a broker would)\n"
            "Prints the bootstrap servers as the first line on stdout, then serves until\n"
            "SIGTERM/SIGINT, or until stdin (a pipe, socket or terminal) is closed.\n",
            MAX_BROKERS);
}

/* Parses a decimal integer in [min, max]; 0 or -EINVAL. */
static int parse_int(const char *text, int min, int max, int *ret_value)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
        return -EINVAL;
    *ret_value = (int)value;
    return 0;
}

/* Kafka topic names: [a-zA-Z0-9._-], 1 to 249 characters, not "." or "..". */
static bool topic_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > MAX_TOPIC_NAME)
        return false;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* "NAME:PARTITIONS" into a topic_spec; 0 or -EINVAL. */
static int parse_topic(const char *text, struct topic_spec *ret_topic)
{
    const char *colon = strrchr(text, ':');
    if (!colon)
        return -EINVAL;
    size_t name_len = (size_t)(colon - text);
    int partitions = 0;
    if (!topic_name_valid(text, name_len) || parse_int(colon + 1, 1, MAX_PARTITIONS, &partitions))
        return -EINVAL;
    memcpy(ret_topic->name, text, name_len);
    ret_topic->name[name_len] = '\0';
    ret_topic->partitions = partitions;
    return 0;
}

/* Fills opts from argv. Returns 0, 1 when --help was asked (and printed), or -EINVAL after
 * printing what is wrong. */
static int parse_args(int argc, char **argv, struct options *opts)
{
    opts->brokers = 1;
    opts->topic_count = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(arg, "--brokers") != 0 && strcmp(arg, "--topic") != 0) {
            fprintf(stderr, "emp-kafka-mock: unknown option '%s'\n", arg);
            usage(stderr);
            return -EINVAL;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "emp-kafka-mock: %s needs a value\n", arg);
            return -EINVAL;
        }
        const char *value = argv[++i];
        if (strcmp(arg, "--brokers") == 0) {
            if (parse_int(value, 1, MAX_BROKERS, &opts->brokers)) {
                fprintf(stderr, "emp-kafka-mock: --brokers '%s': expected 1 to %d\n", value,
                        MAX_BROKERS);
                return -EINVAL;
            }
            continue;
        }
        if (opts->topic_count == MAX_TOPICS) {
            fprintf(stderr, "emp-kafka-mock: at most %d topics\n", MAX_TOPICS);
            return -EINVAL;
        }
        if (parse_topic(value, &opts->topics[opts->topic_count])) {
            fprintf(stderr,
                    "emp-kafka-mock: --topic '%s': expected NAME:PARTITIONS, NAME of "
                    "[a-zA-Z0-9._-] (at most %d), PARTITIONS 1 to %d\n",
                    value, MAX_TOPIC_NAME, MAX_PARTITIONS);
            return -EINVAL;
        }
        opts->topic_count++;
    }
    return 0;
}

/* Watching stdin for end of file only makes sense when a parent holds its other end; /dev/null or
 * a file would end the broker at once. */
static bool stdin_is_lifeline(void)
{
    struct stat st;
    if (fstat(STDIN_FILENO, &st) != 0)
        return false;
    return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || isatty(STDIN_FILENO);
}

/* Blocks until a termination signal arrives on signal_fd or the watched stdin closes. */
static int serve(int signal_fd, bool watch_stdin)
{
    struct pollfd fds[2] = {
        {.fd = signal_fd, .events = POLLIN},
        {.fd = watch_stdin ? STDIN_FILENO : -1, .events = POLLIN},
    };
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "emp-kafka-mock: poll: %s\n", strerror(errno));
            return -errno;
        }
        if (fds[0].revents & POLLIN)
            return 0;
        if (fds[1].revents) {
            /* discard whatever is written; end of file (or an error) ends the broker */
            char buf[4096];
            ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
                return 0;
        }
    }
}

int main(int argc, char **argv)
{
    struct options opts;
    int r = parse_args(argc, argv, &opts);
    if (r != 0)
        return r > 0 ? 0 : 2;

    int status = 1;
    int signal_fd = -1;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *cluster = NULL;

    /* Blocked before librdkafka starts its threads, so that they inherit the mask and the signals
     * reach only the signalfd. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
        fprintf(stderr, "emp-kafka-mock: sigprocmask: %s\n", strerror(errno));
        goto out;
    }
    signal_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (signal_fd < 0) {
        fprintf(stderr, "emp-kafka-mock: signalfd: %s\n", strerror(errno));
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);

    /* The mock cluster hangs off a client handle for its bookkeeping; the handle itself never
     * connects anywhere. */
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* log_level 4 hides the notice that this handle has no bootstrap.servers */
    if (rd_kafka_conf_set(conf, "client.id", "emp-kafka-mock", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "emp-kafka-mock: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "emp-kafka-mock: creating the client handle: %s\n", errstr);
        rd_kafka_conf_destroy(conf); /* rd_kafka_new() takes it only on success */
        goto out;
    }
    cluster = rd_kafka_mock_cluster_new(rk, opts.brokers);
    if (!cluster) {
        fprintf(stderr, "emp-kafka-mock: creating a mock cluster of %d brokers failed\n",
                opts.brokers);
        goto out;
    }
    for (size_t i = 0; i < opts.topic_count; i++) {
        const struct topic_spec *t = &opts.topics[i];
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster, t->name, t->partitions, 1);
        if (err) {
            fprintf(stderr, "emp-kafka-mock: creating topic '%s' (%d partitions): %s\n", t->name,
                    t->partitions, rd_kafka_err2str(err));
            goto out;
        }
    }

    if (printf("%s\n", rd_kafka_mock_cluster_bootstraps(cluster)) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "emp-kafka-mock: writing the bootstrap address: %s\n", strerror(errno));
        goto out;
    }

    if (serve(signal_fd, stdin_is_lifeline()) == 0)
        status = 0;

out:
    if (cluster)
        rd_kafka_mock_cluster_destroy(cluster);
    if (rk)
        rd_kafka_destroy(rk);
    if (signal_fd >= 0)
        close(signal_fd);
    return status;
}
