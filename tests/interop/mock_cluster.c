/*
 * A Kafka cluster we did not write: librdkafka's mock cluster (rdkafka_mock.h), run as a
 * standalone process so that franzy's client and the golden-byte capture can talk to it.
 *
 * usage: mock_cluster [BROKERS] [TOPIC:PARTITIONS ...]
 *
 * Prints the bootstrap address ("127.0.0.1:PORT,127.0.0.1:PORT,...") as the only line on
 * stdout, then serves until stdin reaches end of file or SIGTERM/SIGINT arrives.
 * Diagnostics go to stderr. Exit status: 0 after a clean stop, 1 on a setup error, 2 on a
 * usage error.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
        (void)sig;
        stop_requested = 1;
}

static void usage(const char *prog) {
        fprintf(stderr, "usage: %s [BROKERS] [TOPIC:PARTITIONS ...]\n", prog);
}

/* Parses a positive int in [1, max]; returns -1 when s is not one. */
static int parse_count(const char *s, int max) {
        char *end = NULL;
        long v;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || v < 1 || v > max)
                return -1;
        return (int)v;
}

int main(int argc, char **argv) {
        int brokers = 3;
        int first_topic = 1;
        char errstr[512];
        rd_kafka_conf_t *conf;
        rd_kafka_t *rk;
        rd_kafka_mock_cluster_t *mcluster;
        struct sigaction sa;
        int status = 1;
        int i;

        if (argc > 1 && strchr(argv[1], ':') == NULL) {
                brokers = parse_count(argv[1], 64);
                if (brokers < 0) {
                        usage(argv[0]);
                        return 2;
                }
                first_topic = 2;
        }

        /* The mock cluster lives inside an rd_kafka_t handle; a producer handle with no
         * bootstrap servers is the smallest one that owns no real connections. */
        conf = rd_kafka_conf_new();
        if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
                fprintf(stderr, "mock_cluster: %s\n", errstr);
                return 1;
        }
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (rk == NULL) {
                fprintf(stderr, "mock_cluster: rd_kafka_new: %s\n", errstr);
                return 1;
        }

        mcluster = rd_kafka_mock_cluster_new(rk, brokers);
        if (mcluster == NULL) {
                fprintf(stderr, "mock_cluster: rd_kafka_mock_cluster_new failed\n");
                rd_kafka_destroy(rk);
                return 1;
        }

        for (i = first_topic; i < argc; i++) {
                char name[256];
                const char *colon = strrchr(argv[i], ':');
                size_t len;
                int partitions;
                rd_kafka_resp_err_t err;

                if (colon == NULL || colon == argv[i]) {
                        usage(argv[0]);
                        status = 2;
                        goto fail;
                }
                len = (size_t)(colon - argv[i]);
                if (len >= sizeof(name)) {
                        fprintf(stderr, "mock_cluster: topic name too long: %s\n", argv[i]);
                        goto fail;
                }
                memcpy(name, argv[i], len);
                name[len] = '\0';
                partitions = parse_count(colon + 1, 100000);
                if (partitions < 0) {
                        usage(argv[0]);
                        status = 2;
                        goto fail;
                }
                /* The mock cluster spreads leaders over the brokers; librdkafka 2.0 lists
                 * every broker as a replica whatever the factor asked for. */
                err = rd_kafka_mock_topic_create(mcluster, name, partitions, 1);
                if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                        fprintf(stderr, "mock_cluster: create topic %s: %s\n", name,
                                rd_kafka_err2str(err));
                        goto fail;
                }
                fprintf(stderr, "mock_cluster: topic %s with %d partitions\n", name,
                        partitions);
        }

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        printf("%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
        fflush(stdout);

        /* Serve until stdin closes or a signal arrives; the mock brokers run on their own
         * thread. poll() with a timeout so that a signal is noticed even when stdin stays
         * open forever (e.g. /dev/null is at EOF at once, a pipe may never close). */
        while (!stop_requested) {
                struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
                int n = poll(&pfd, 1, 200);
                if (n > 0) {
                        char buf[256];
                        ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
                        if (r == 0)
                                break; /* end of file */
                        if (r < 0 && errno != EINTR && errno != EAGAIN)
                                break;
                } else if (n < 0 && errno != EINTR) {
                        break;
                }
        }

        fprintf(stderr, "mock_cluster: stopping\n");
        rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(rk);
        return 0;

fail:
        rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(rk);
        return status;
}
