/* SPDX-License-Identifier: Apache-2.0
 * The broker's ceiling for bench/amqp.py: a minimal rabbitmq-c publisher, no framework. It
 * publishes N persistent messages of SIZE bytes to EXCHANGE with publisher confirms, at most
 * WINDOW unconfirmed (as sink-amqp's max_in_flight), and prints the seconds from the first
 * publish to the last confirm. Each message is the one sink-amqp publishes for a record: the
 * same properties (content type, a message id per message, app id, type, timestamp) and the
 * mandatory flag, so that the broker does the same work for both; with BARE, only delivery mode
 * and content type, not mandatory (the broker's work for the smallest message).
 * Usage: amqp_publish HOST PORT EXCHANGE ROUTING_KEY N SIZE WINDOW [BARE] */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char* what) {
    fprintf(stderr, "amqp_publish: %s\n", what);
    exit(1);
}

int main(int argc, char** argv) {
    if (argc != 8 && argc != 9) {
        die("usage: HOST PORT EXCHANGE ROUTING_KEY N SIZE WINDOW [BARE]");
    }
    int bare = argc == 9;
    long n = atol(argv[5]), size = atol(argv[6]), window = atol(argv[7]);
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t* s = amqp_tcp_socket_new(c);
    if (amqp_socket_open(s, argv[1], atoi(argv[2])) != AMQP_STATUS_OK) die("connect");
    if (amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type !=
        AMQP_RESPONSE_NORMAL)
        die("login");
    amqp_channel_open(c, 1);
    if (amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL) die("channel");
    amqp_confirm_select(c, 1);
    if (amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL) die("confirm.select");
    char* body = malloc((size_t)size);
    memset(body, 'x', (size_t)size);
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props);
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    if (!bare) {
        props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_TYPE_FLAG |
                        AMQP_BASIC_TIMESTAMP_FLAG;
    }
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
    props.content_type = amqp_cstring_bytes("application/octet-stream");
    props.app_id = amqp_cstring_bytes("mysqlprobe");
    props.type = amqp_cstring_bytes(argv[4]);
    char id[64];
    amqp_bytes_t msg = {(size_t)size, body};
    long published = 0, confirmed = 0;
    double t0 = now();
    while (confirmed < n) {
        while (published < n && published - confirmed < window) {
            snprintf(id, sizeof id, "bench/sources[0]/%ld", published + 1);
            props.message_id = amqp_cstring_bytes(id);
            props.timestamp = (uint64_t)time(NULL);
            if (amqp_basic_publish(c, 1, amqp_cstring_bytes(argv[3]), amqp_cstring_bytes(argv[4]),
                                   bare ? 0 : 1, 0, &props, msg) != AMQP_STATUS_OK)
                die("publish");
            ++published;
        }
        amqp_frame_t f;
        struct timeval tv = {0, published - confirmed < window && published < n ? 0 : 100000};
        int st = amqp_simple_wait_frame_noblock(c, &f, &tv);
        if (st == AMQP_STATUS_TIMEOUT) continue;
        if (st != AMQP_STATUS_OK) die("wait frame");
        if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t* a = f.payload.method.decoded;
            confirmed = (long)a->delivery_tag; /* tags count from 1: the last confirmed */
        } else if (f.frame_type == AMQP_FRAME_METHOD) {
            die("unexpected method (nack or close)");
        }
        amqp_maybe_release_buffers(c);
    }
    printf("%.3f\n", now() - t0);
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    free(body);
    return 0;
}
