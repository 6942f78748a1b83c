/*
 * vsock-tool: the test and benchmark peer of the nested suite and
 * bench/vsock. Built statically by tests/nested/nested.py and carried into
 * the parent image and the enclaves' root filesystems; it talks AF_VSOCK
 * inside an enclave, and hybrid vsock (Unix sockets, "CONNECT <port>\n",
 * docs/ARCHITECTURE.md "Hybrid vsock") or TCP on the parent.
 *
 * Endpoints:  vsock:CID:PORT   AF_VSOCK
 *             hybrid:PATH:PORT the enclave's vsock.sock, then CONNECT PORT
 *             unix:PATH        a Unix stream socket
 *             tcp:HOST:PORT    TCP (IPv4)
 *
 * Commands (each prints one summary line on stdout, exits 0 on success):
 *   serve ENDPOINT                 echo every connection's bytes back, forever
 *                                  (vsock:ANY:PORT, unix:PATH, tcp:HOST:PORT)
 *   load ENDPOINT CONNECTIONS BYTES
 *                                  CONNECTIONS parallel connections, each sending
 *                                  BYTES of its own pseudo-random stream and
 *                                  checking that the echo is byte-identical; the
 *                                  SHA-256 of every stream is printed
 *   expect-reset ENDPOINT          a connect that must fail with a reset or a
 *                                  refusal; prints how long it took
 *   clock ENDPOINT                 sends this side's CLOCK_REALTIME (ns, text)
 *   clock-check ENDPOINT           serves once: receives a clock, prints
 *                                  "skew_ms <ms>" against its own
 *   sink ENDPOINT                  serve: read and count, reply with the count
 *   source ENDPOINT BYTES          send BYTES in 64 KiB writes, wait for the
 *                                  count; prints MiB/s
 *   ping ENDPOINT ROUNDS           64-byte round trips against serve; prints
 *                                  the median and p99 in microseconds
 *   pull ENDPOINT BYTES            ask a `push` server for BYTES, read them;
 *                                  prints MiB/s
 *   push ENDPOINT                  serve: read an 8-byte count, send that many
 *                                  bytes in 64 KiB writes
 *   stream - INDEX BYTES           write connection INDEX's stream to stdout
 *                                  (so that `sha256sum` can check a digest)
 *   send ENDPOINT                  connect, send standard input, half-close,
 *                                  wait for the peer to close
 *   receive ENDPOINT FILE          serve one connection: write its bytes to
 *                                  FILE (mode 0600), then close it
 *   rng-ready                      exit 0 when the kernel's random pool is
 *                                  initialised (getrandom without waiting)
 *
 * A unix:PATH listener is created mode 0660 (docs/FORMATS.md §1); with
 * VSOCK_TOOL_GROUP=GID in the environment (root only) it is created in that
 * group, as a parent program's listener must be for a VMM that runs as its
 * service account (vmm(1) --user). clock-check and receive on a unix:
 * endpoint print who connected, read from /proc while the connection is
 * still open: "peer: pid P uid U gid G" (SO_PEERCRED) and the peer's
 * "peer-status Uid:", "Gid:" and "Seccomp:" lines of /proc/P/status.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/fsuid.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define MAX_CONNECTIONS 1024

static void die(char const* what)
{
    fprintf(stderr, "vsock-tool: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "vsock-tool: bad arguments (see the comment at the top of tests/nested/tools/vsock_tool.c)\n");
    exit(2);
}

static uint64_t now_ns(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ---- SHA-256 (FIPS 180-4), for the digests the scenario compares ---- */

typedef struct {
    uint32_t state[8];
    uint64_t length;
    uint8_t block[64];
    size_t used;
} Sha256;

static uint32_t const K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(Sha256* s, uint8_t const* p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->state[0], b = s->state[1], c = s->state[2], d = s->state[3];
    uint32_t e = s->state[4], f = s->state[5], g = s->state[6], h = s->state[7];
    for (int i = 0; i < 64; ++i) {
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s->state[0] += a; s->state[1] += b; s->state[2] += c; s->state[3] += d;
    s->state[4] += e; s->state[5] += f; s->state[6] += g; s->state[7] += h;
}

static void sha256_init(Sha256* s)
{
    static uint32_t const initial[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(s->state, initial, sizeof(initial));
    s->length = 0;
    s->used = 0;
}

static void sha256_update(Sha256* s, uint8_t const* data, size_t size)
{
    s->length += size;
    while (size > 0) {
        size_t take = 64 - s->used < size ? 64 - s->used : size;
        memcpy(s->block + s->used, data, take);
        s->used += take;
        data += take;
        size -= take;
        if (s->used == 64) {
            sha256_block(s, s->block);
            s->used = 0;
        }
    }
}

static void sha256_hex(Sha256* s, char out[65])
{
    uint64_t bits = s->length * 8;
    uint8_t pad = 0x80;
    sha256_update(s, &pad, 1);
    uint8_t zero = 0;
    while (s->used != 56)
        sha256_update(s, &zero, 1);
    uint8_t length[8];
    for (int i = 0; i < 8; ++i)
        length[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, length, 8);
    for (int i = 0; i < 8; ++i)
        sprintf(out + 8 * i, "%08x", s->state[i]);
}

/* ---- a reproducible stream per connection (xorshift64*) ----
 * Byte k of the stream does not depend on how the stream is cut into
 * pieces: reads return whatever sizes the transport delivers. */

typedef struct {
    uint64_t state;
    uint64_t word;
    int left; /* bytes of `word` not yet used */
} Stream;

static Stream stream_for(int index)
{
    Stream s = { 0x9E3779B97F4A7C15ULL * (uint64_t)(index + 1), 0, 0 };
    return s;
}

static void fill_stream(Stream* s, uint8_t* out, size_t size)
{
    for (size_t i = 0; i < size; ++i) {
        if (s->left == 0) {
            s->state ^= s->state >> 12;
            s->state ^= s->state << 25;
            s->state ^= s->state >> 27;
            s->word = s->state * 0x2545F4914F6CDD1DULL;
            s->left = 8;
        }
        out[i] = (uint8_t)(s->word >> (8 * (8 - s->left)));
        --s->left;
    }
}

/* ---- endpoints ---- */

typedef struct {
    int kind; /* 'v' vsock, 'h' hybrid, 'u' unix, 't' tcp */
    unsigned cid;
    unsigned port;
    char path[108];
    struct in_addr ip;
} Endpoint;

static Endpoint parse_endpoint(char const* text)
{
    Endpoint e;
    memset(&e, 0, sizeof(e));
    if (strncmp(text, "vsock:", 6) == 0) {
        e.kind = 'v';
        char const* cid = text + 6;
        char const* colon = strchr(cid, ':');
        if (!colon)
            usage();
        e.cid = strncmp(cid, "ANY", 3) == 0 ? VMADDR_CID_ANY : (unsigned)strtoul(cid, NULL, 10);
        e.port = (unsigned)strtoul(colon + 1, NULL, 10);
    } else if (strncmp(text, "hybrid:", 7) == 0) {
        e.kind = 'h';
        char const* colon = strrchr(text + 7, ':');
        if (!colon || (size_t)(colon - (text + 7)) >= sizeof(e.path))
            usage();
        memcpy(e.path, text + 7, (size_t)(colon - (text + 7)));
        e.port = (unsigned)strtoul(colon + 1, NULL, 10);
    } else if (strncmp(text, "unix:", 5) == 0) {
        e.kind = 'u';
        if (strlen(text + 5) >= sizeof(e.path))
            usage();
        strcpy(e.path, text + 5);
    } else if (strncmp(text, "tcp:", 4) == 0) {
        e.kind = 't';
        char host[64];
        char const* colon = strrchr(text + 4, ':');
        if (!colon || (size_t)(colon - (text + 4)) >= sizeof(host))
            usage();
        memcpy(host, text + 4, (size_t)(colon - (text + 4)));
        host[colon - (text + 4)] = 0;
        if (inet_pton(AF_INET, host, &e.ip) != 1)
            usage();
        e.port = (unsigned)strtoul(colon + 1, NULL, 10);
    } else {
        usage();
    }
    return e;
}

static int socket_for(Endpoint const* e, struct sockaddr_storage* address, socklen_t* length)
{
    memset(address, 0, sizeof(*address));
    if (e->kind == 'v') {
        struct sockaddr_vm* vm = (struct sockaddr_vm*)address;
        vm->svm_family = AF_VSOCK;
        vm->svm_cid = e->cid;
        vm->svm_port = e->port;
        *length = sizeof(*vm);
        return socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    }
    if (e->kind == 't') {
        struct sockaddr_in* in = (struct sockaddr_in*)address;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)e->port);
        in->sin_addr = e->ip;
        *length = sizeof(*in);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
    }
    struct sockaddr_un* un = (struct sockaddr_un*)address;
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, e->path);
    *length = sizeof(*un);
    return socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

static int write_all(int fd, void const* data, size_t size)
{
    uint8_t const* p = data;
    while (size > 0) {
        ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

static int read_all(int fd, void* data, size_t size)
{
    uint8_t* p = data;
    while (size > 0) {
        ssize_t n = recv(fd, p, size, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = EPIPE;
            return -1;
        }
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

/* Connects; for hybrid, does the CONNECT/OK handshake. -1 with errno set. */
static int connect_endpoint(Endpoint const* e)
{
    struct sockaddr_storage address;
    socklen_t length;
    int fd = socket_for(e, &address, &length);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr*)&address, length) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (e->kind == 'h') {
        char line[32];
        int n = snprintf(line, sizeof(line), "CONNECT %u\n", e->port);
        if (write_all(fd, line, (size_t)n) < 0) {
            close(fd);
            return -1;
        }
        /* "OK <port>\n", read byte by byte so that no stream byte is taken. */
        size_t used = 0;
        for (;;) {
            char c;
            ssize_t got = recv(fd, &c, 1, 0);
            if (got <= 0) {
                close(fd);
                errno = got == 0 ? ECONNREFUSED : errno;
                return -1;
            }
            if (c == '\n')
                break;
            if (used + 1 >= sizeof(line)) {
                close(fd);
                errno = EPROTO;
                return -1;
            }
            line[used++] = c;
        }
        line[used] = 0;
        if (strncmp(line, "OK ", 3) != 0) {
            close(fd);
            errno = EPROTO;
            return -1;
        }
    }
    return fd;
}

static int listen_endpoint(Endpoint const* e)
{
    struct sockaddr_storage address;
    socklen_t length;
    int fd = socket_for(e, &address, &length);
    if (fd < 0)
        die("socket");
    int one = 1;
    if (e->kind == 't')
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (e->kind == 'u')
        unlink(e->path);
    mode_t old_umask = 0;
    gid_t old_group = 0;
    char const* group = getenv("VSOCK_TOOL_GROUP");
    int grouped = e->kind == 'u' && group && *group;
    if (e->kind == 'u')
        old_umask = umask(0117);
    if (grouped) {
        gid_t gid = (gid_t)strtoul(group, NULL, 10);
        old_group = (gid_t)setfsgid(gid);
        if ((gid_t)setfsgid((gid_t)-1) != gid) {
            errno = EPERM;
            die("VSOCK_TOOL_GROUP: setfsgid");
        }
    }
    int bound = bind(fd, (struct sockaddr*)&address, length);
    int bind_errno = errno;
    if (grouped)
        setfsgid(old_group);
    if (e->kind == 'u')
        umask(old_umask);
    errno = bind_errno;
    if (bound < 0)
        die("bind");
    if (listen(fd, 256) < 0)
        die("listen");
    return fd;
}

/* Who is at the other end of a Unix connection, while it is open: the
 * connecting process cannot have exited yet. */
static void describe_peer(Endpoint const* e, int fd)
{
    if (e->kind != 'u')
        return;
    struct ucred peer;
    socklen_t size = sizeof(peer);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &size) < 0)
        die("SO_PEERCRED");
    printf("peer: pid %d uid %u gid %u\n", (int)peer.pid, (unsigned)peer.uid, (unsigned)peer.gid);
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)peer.pid);
    FILE* status = fopen(path, "r");
    if (!status) {
        printf("peer-status: %s: %s\n", path, strerror(errno));
        return;
    }
    char line[256];
    while (fgets(line, sizeof(line), status)) {
        if (strncmp(line, "Uid:", 4) == 0 || strncmp(line, "Gid:", 4) == 0 || strncmp(line, "Seccomp:", 8) == 0)
            printf("peer-status %s", line);
    }
    fclose(status);
    fflush(stdout);
}

/* ---- commands ---- */

typedef void (*Handler)(int fd);

static void serve_forever(Endpoint const* e, Handler handler)
{
    int listener = listen_endpoint(e);
    signal(SIGCHLD, SIG_IGN);
    printf("serving\n");
    fflush(stdout);
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("accept");
        }
        pid_t child = fork();
        if (child == 0) {
            close(listener);
            handler(fd);
            _exit(0);
        }
        close(fd);
    }
}

static void echo_handler(int fd)
{
    static uint8_t buffer[CHUNK];
    for (;;) {
        ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0)
            return;
        if (write_all(fd, buffer, (size_t)n) < 0)
            return;
    }
}

static void sink_handler(int fd)
{
    static uint8_t buffer[CHUNK];
    uint64_t total = 0;
    for (;;) {
        ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        total += (uint64_t)n;
    }
    write_all(fd, &total, sizeof(total));
}

static void push_handler(int fd)
{
    static uint8_t buffer[CHUNK];
    uint64_t wanted;
    if (read_all(fd, &wanted, sizeof(wanted)) < 0)
        return;
    memset(buffer, 0x5a, sizeof(buffer));
    while (wanted > 0) {
        size_t take = wanted < sizeof(buffer) ? (size_t)wanted : sizeof(buffer);
        if (write_all(fd, buffer, take) < 0)
            return;
        wanted -= take;
    }
    char end;
    recv(fd, &end, 1, 0);
}

typedef struct {
    Endpoint const* endpoint;
    int index;
    uint64_t bytes;
    int ok;
    char digest[65];
    char error[192];
} LoadJob;

typedef struct {
    int fd;
    int index;
    uint64_t bytes;
} Sender;

static void* send_stream(void* argument)
{
    Sender* s = argument;
    uint8_t* buffer = malloc(CHUNK);
    Stream stream = stream_for(s->index);
    uint64_t left = s->bytes;
    while (left > 0) {
        size_t take = left < CHUNK ? (size_t)left : CHUNK;
        fill_stream(&stream, buffer, take);
        if (write_all(s->fd, buffer, take) < 0)
            break;
        left -= take;
    }
    shutdown(s->fd, SHUT_WR);
    free(buffer);
    return NULL;
}

static void* run_load(void* argument)
{
    LoadJob* job = argument;
    int fd = connect_endpoint(job->endpoint);
    if (fd < 0) {
        snprintf(job->error, sizeof(job->error), "connection %d: connect: %s", job->index, strerror(errno));
        return NULL;
    }
    Sender sender = { fd, job->index, job->bytes };
    pthread_t thread;
    pthread_create(&thread, NULL, send_stream, &sender);
    uint8_t* got = malloc(CHUNK);
    uint8_t* want = malloc(CHUNK);
    Stream stream = stream_for(job->index);
    uint64_t received = 0;
    Sha256 sent_digest;
    sha256_init(&sent_digest);
    Sha256 received_digest;
    sha256_init(&received_digest);
    int ok = 1;
    while (received < job->bytes) {
        size_t take = job->bytes - received < CHUNK ? (size_t)(job->bytes - received) : CHUNK;
        ssize_t n = recv(fd, got, take, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(job->error, sizeof(job->error), "connection %d: %s after %" PRIu64 " of %" PRIu64 " bytes",
                job->index, n == 0 ? "end of stream" : strerror(errno), received, job->bytes);
            ok = 0;
            break;
        }
        fill_stream(&stream, want, (size_t)n);
        sha256_update(&sent_digest, want, (size_t)n);
        sha256_update(&received_digest, got, (size_t)n);
        if (memcmp(got, want, (size_t)n) != 0 && ok) {
            snprintf(job->error, sizeof(job->error), "connection %d: the echo differs near byte %" PRIu64, job->index, received);
            ok = 0;
        }
        received += (uint64_t)n;
    }
    pthread_join(thread, NULL);
    char sent_hex[65];
    sha256_hex(&sent_digest, sent_hex);
    sha256_hex(&received_digest, job->digest);
    if (ok && strcmp(sent_hex, job->digest) != 0) {
        snprintf(job->error, sizeof(job->error), "connection %d: sha256 %s sent, %s received", job->index, sent_hex, job->digest);
        ok = 0;
    }
    job->ok = ok;
    close(fd);
    free(got);
    free(want);
    return NULL;
}

static int command_load(Endpoint const* e, int connections, uint64_t bytes)
{
    if (connections < 1 || connections > MAX_CONNECTIONS)
        usage();
    LoadJob* jobs = calloc((size_t)connections, sizeof(LoadJob));
    pthread_t* threads = calloc((size_t)connections, sizeof(pthread_t));
    uint64_t started = now_ns(CLOCK_MONOTONIC);
    for (int i = 0; i < connections; ++i) {
        jobs[i].endpoint = e;
        jobs[i].index = i;
        jobs[i].bytes = bytes;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setstacksize(&attributes, 256 * 1024);
        pthread_create(&threads[i], &attributes, run_load, &jobs[i]);
    }
    int good = 0;
    for (int i = 0; i < connections; ++i) {
        pthread_join(threads[i], NULL);
        if (jobs[i].ok) {
            ++good;
            printf("stream %d sha256 %s\n", i, jobs[i].digest);
        } else {
            printf("stream %d FAILED %s\n", i, jobs[i].error);
        }
    }
    double seconds = (double)(now_ns(CLOCK_MONOTONIC) - started) / 1e9;
    printf("load: %d of %d connections echoed %" PRIu64 " bytes each byte-identical in %.2f s\n", good, connections, bytes, seconds);
    return good == connections ? 0 : 1;
}

static int command_expect_reset(Endpoint const* e)
{
    uint64_t started = now_ns(CLOCK_MONOTONIC);
    int fd = connect_endpoint(e);
    double ms = (double)(now_ns(CLOCK_MONOTONIC) - started) / 1e6;
    if (fd >= 0) {
        printf("expect-reset: connected (%.1f ms), expected a reset\n", ms);
        return 1;
    }
    printf("expect-reset: %s after %.1f ms\n", strerror(errno), ms);
    return errno == ECONNRESET || errno == ECONNREFUSED ? 0 : 1;
}

static int command_clock(Endpoint const* e)
{
    int fd = connect_endpoint(e);
    if (fd < 0)
        die("connect");
    char text[32];
    int n = snprintf(text, sizeof(text), "%" PRIu64 "\n", now_ns(CLOCK_REALTIME));
    if (write_all(fd, text, (size_t)n) < 0)
        die("send");
    printf("clock: sent %s", text);
    close(fd);
    return 0;
}

static int command_clock_check(Endpoint const* e)
{
    int listener = listen_endpoint(e);
    printf("serving\n");
    fflush(stdout);
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        die("accept");
    describe_peer(e, fd);
    char text[32] = { 0 };
    size_t used = 0;
    while (used + 1 < sizeof(text)) {
        ssize_t n = recv(fd, text + used, sizeof(text) - 1 - used, 0);
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    uint64_t mine = now_ns(CLOCK_REALTIME);
    uint64_t theirs = strtoull(text, NULL, 10);
    double skew_ms = ((double)theirs - (double)mine) / 1e6;
    printf("skew_ms %.1f\n", skew_ms);
    return theirs ? 0 : 1;
}

static int command_source(Endpoint const* e, uint64_t bytes)
{
    int fd = connect_endpoint(e);
    if (fd < 0)
        die("connect");
    uint8_t* buffer = malloc(CHUNK);
    memset(buffer, 0xa5, CHUNK);
    uint64_t started = now_ns(CLOCK_MONOTONIC);
    for (uint64_t left = bytes; left > 0;) {
        size_t take = left < CHUNK ? (size_t)left : CHUNK;
        if (write_all(fd, buffer, take) < 0)
            die("send");
        left -= take;
    }
    shutdown(fd, SHUT_WR);
    uint64_t counted = 0;
    if (read_all(fd, &counted, sizeof(counted)) < 0)
        die("recv the count");
    double seconds = (double)(now_ns(CLOCK_MONOTONIC) - started) / 1e9;
    printf("source: %" PRIu64 " bytes in %.3f s: %.1f MiB/s\n", counted, seconds, (double)counted / (1 << 20) / seconds);
    return counted == bytes ? 0 : 1;
}

static int command_pull(Endpoint const* e, uint64_t bytes)
{
    int fd = connect_endpoint(e);
    if (fd < 0)
        die("connect");
    uint8_t* buffer = malloc(CHUNK);
    uint64_t started = now_ns(CLOCK_MONOTONIC);
    if (write_all(fd, &bytes, sizeof(bytes)) < 0)
        die("send");
    uint64_t received = 0;
    while (received < bytes) {
        ssize_t n = recv(fd, buffer, CHUNK, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("recv");
        received += (uint64_t)n;
    }
    double seconds = (double)(now_ns(CLOCK_MONOTONIC) - started) / 1e9;
    printf("pull: %" PRIu64 " bytes in %.3f s: %.1f MiB/s\n", received, seconds, (double)received / (1 << 20) / seconds);
    return 0;
}

static int compare_u64(void const* a, void const* b)
{
    uint64_t x = *(uint64_t const*)a, y = *(uint64_t const*)b;
    return x < y ? -1 : x > y;
}

static int command_ping(Endpoint const* e, int rounds)
{
    if (rounds < 1 || rounds > 1000000)
        usage();
    int fd = connect_endpoint(e);
    if (fd < 0)
        die("connect");
    uint8_t message[64];
    memset(message, 0x42, sizeof(message));
    uint64_t* samples = calloc((size_t)rounds, sizeof(uint64_t));
    for (int i = 0; i < rounds; ++i) {
        uint64_t started = now_ns(CLOCK_MONOTONIC);
        if (write_all(fd, message, sizeof(message)) < 0 || read_all(fd, message, sizeof(message)) < 0)
            die("round trip");
        samples[i] = now_ns(CLOCK_MONOTONIC) - started;
    }
    qsort(samples, (size_t)rounds, sizeof(uint64_t), compare_u64);
    printf("ping: %d rounds of 64 bytes: median %.1f us, p99 %.1f us\n", rounds, (double)samples[rounds / 2] / 1e3,
        (double)samples[(size_t)((double)rounds * 0.99)] / 1e3);
    return 0;
}

static int command_send(Endpoint const* e)
{
    int fd = connect_endpoint(e);
    if (fd < 0)
        die("connect");
    static uint8_t buffer[CHUNK];
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buffer, sizeof(buffer));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("read stdin");
        if (n == 0)
            break;
        if (write_all(fd, buffer, (size_t)n) < 0)
            die("send");
        total += (uint64_t)n;
    }
    if (shutdown(fd, SHUT_WR) < 0)
        die("shutdown");
    /* The receiver closes once it has everything. */
    while (recv(fd, buffer, sizeof(buffer), 0) > 0) {
    }
    close(fd);
    fprintf(stderr, "send: %" PRIu64 " bytes\n", total);
    return 0;
}

static int command_receive(Endpoint const* e, char const* path)
{
    int listener = listen_endpoint(e);
    printf("serving\n");
    fflush(stdout);
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        die("accept");
    describe_peer(e, fd);
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0)
        die("open");
    static uint8_t buffer[CHUNK];
    uint64_t total = 0;
    for (;;) {
        ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("recv");
        if (n == 0)
            break;
        if (write(out, buffer, (size_t)n) != n)
            die("write");
        total += (uint64_t)n;
    }
    if (close(out) < 0)
        die("close");
    close(fd);
    printf("receive: %" PRIu64 " bytes\n", total);
    return 0;
}

static int command_rng_ready(void)
{
    uint8_t byte;
    if (getrandom(&byte, 1, GRND_NONBLOCK) == 1) {
        printf("rng-ready: yes\n");
        return 0;
    }
    printf("rng-ready: no (%s)\n", strerror(errno));
    return 1;
}

static int command_stream(int index, uint64_t bytes)
{
    uint8_t* buffer = malloc(CHUNK);
    Stream stream = stream_for(index);
    while (bytes > 0) {
        size_t take = bytes < CHUNK ? (size_t)bytes : CHUNK;
        fill_stream(&stream, buffer, take);
        if (fwrite(buffer, 1, take, stdout) != take)
            return 1;
        bytes -= take;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char** argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 5 && strcmp(argv[1], "stream") == 0)
        return command_stream(atoi(argv[3]), strtoull(argv[4], NULL, 10));
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && strcmp(argv[1], "rng-ready") == 0)
        return command_rng_ready();
    if (argc < 3)
        usage();
    char const* command = argv[1];
    Endpoint e = parse_endpoint(argv[2]);
    if (strcmp(command, "serve") == 0)
        serve_forever(&e, echo_handler);
    if (strcmp(command, "sink") == 0)
        serve_forever(&e, sink_handler);
    if (strcmp(command, "push") == 0)
        serve_forever(&e, push_handler);
    if (strcmp(command, "load") == 0 && argc == 5)
        return command_load(&e, atoi(argv[3]), strtoull(argv[4], NULL, 10));
    if (strcmp(command, "expect-reset") == 0)
        return command_expect_reset(&e);
    if (strcmp(command, "clock") == 0)
        return command_clock(&e);
    if (strcmp(command, "clock-check") == 0)
        return command_clock_check(&e);
    if (strcmp(command, "source") == 0 && argc == 4)
        return command_source(&e, strtoull(argv[3], NULL, 10));
    if (strcmp(command, "pull") == 0 && argc == 4)
        return command_pull(&e, strtoull(argv[3], NULL, 10));
    if (strcmp(command, "send") == 0 && argc == 3)
        return command_send(&e);
    if (strcmp(command, "receive") == 0 && argc == 4)
        return command_receive(&e, argv[3]);
    if (strcmp(command, "ping") == 0 && argc == 4)
        return command_ping(&e, atoi(argv[3]));
    usage();
    return 2;
}
