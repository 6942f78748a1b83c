/* libqtsm: a call on one descriptor does not wait for a call on another
 * (tests/applets/qtsm/descriptors.test). Each descriptor is one end of a
 * socketpair whose other end a thread of this program serves as
 * qtsm-server would. The first server holds its answer until the call on
 * the second descriptor has returned (or, so that a library that
 * serializes all calls fails instead of hanging, for at most 20 s). Prints
 * "ok" and exits 0 when the second call finished while the first was still
 * waiting for its answer. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "qtsm_lib.h"

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int first_request_seen; /* the first server has the first call's request */
static int second_done;        /* the call on the second descriptor returned */
static int second_done_before_first_answer;

static int read_exact(int fd, uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t n = read(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

/* Reads one request frame and answers {"GetRandom": {"random": 32 bytes}}. */
static int serve_one(int fd, int hold)
{
    uint8_t header[4], request[4096];
    if (read_exact(fd, header, 4) < 0)
        return -1;
    uint32_t length = (uint32_t)header[0] << 24 | (uint32_t)header[1] << 16 | (uint32_t)header[2] << 8 | header[3];
    if (length == 0 || length > sizeof(request) || read_exact(fd, request, length) < 0)
        return -1;
    if (hold) {
        pthread_mutex_lock(&mutex);
        first_request_seen = 1;
        pthread_cond_broadcast(&changed);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 20;
        while (!second_done && pthread_cond_timedwait(&changed, &mutex, &until) == 0) {
        }
        second_done_before_first_answer = second_done;
        pthread_mutex_unlock(&mutex);
    }
    static const uint8_t head[] = { 0xa1, 0x69, 'G', 'e', 't', 'R', 'a', 'n', 'd', 'o', 'm', 0xa1, 0x66, 'r', 'a', 'n',
        'd', 'o', 'm', 0x58, 0x20 };
    uint8_t answer[4 + sizeof(head) + 32];
    uint32_t body = sizeof(head) + 32;
    answer[0] = 0;
    answer[1] = 0;
    answer[2] = (uint8_t)(body >> 8);
    answer[3] = (uint8_t)body;
    memcpy(answer + 4, head, sizeof(head));
    memset(answer + 4 + sizeof(head), 0x42, 32);
    return write(fd, answer, sizeof(answer)) == (ssize_t)sizeof(answer) ? 0 : -1;
}

static void *first_server(void *fd) { return (void *)(intptr_t)serve_one((int)(intptr_t)fd, 1); }
static void *second_server(void *fd) { return (void *)(intptr_t)serve_one((int)(intptr_t)fd, 0); }

static int first_client_fd;
static int first_status = -1;

static void *first_client(void *unused)
{
    (void)unused;
    uint8_t random[32];
    first_status = qtsm_get_random(first_client_fd, random, sizeof(random));
    return NULL;
}

int main(void)
{
    int first[2], second[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, first) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, second) < 0) {
        perror("socketpair");
        return 2;
    }
    first_client_fd = first[0];
    pthread_t servers[2], client;
    pthread_create(&servers[0], NULL, first_server, (void *)(intptr_t)first[1]);
    pthread_create(&servers[1], NULL, second_server, (void *)(intptr_t)second[1]);
    pthread_create(&client, NULL, first_client, NULL);

    /* The first call is in its round trip (its request has arrived). */
    pthread_mutex_lock(&mutex);
    while (!first_request_seen)
        pthread_cond_wait(&changed, &mutex);
    pthread_mutex_unlock(&mutex);

    uint8_t random[32];
    int second_status = qtsm_get_random(second[0], random, sizeof(random));
    pthread_mutex_lock(&mutex);
    second_done = 1;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&mutex);

    pthread_join(client, NULL);
    pthread_join(servers[0], NULL);
    pthread_join(servers[1], NULL);
    if (first_status != NO_ERROR || second_status != NO_ERROR) {
        fprintf(stderr, "statuses %d and %d, expected %d\n", first_status, second_status, NO_ERROR);
        return 1;
    }
    if (!second_done_before_first_answer) {
        fprintf(stderr, "the call on the second descriptor waited for the call on the first\n");
        return 1;
    }
    printf("ok\n");
    return 0;
}
