/* Load generator for bench/qtsm's in-enclave figure (built by that script,
 * statically, against lib/qtsm/qtsm_lib.h and libqtsm.a; not part of qtbox).
 *
 * Usage:
 *   qtsm-load run MODE CLIENTS SECONDS [attest|random]
 *       CLIENTS clients, each with its own qtsm_lib_init() connection,
 *       call qtsm_get_attestation with a fresh 16-byte nonce back to back
 *       for SECONDS; MODE is `procs` (a forked process per client) or
 *       `threads` (a thread per client, in this one process). Every call
 *       must return NO_ERROR with a document that carries its nonce.
 *       With `random`, the calls are qtsm_get_random of 256 bytes (one
 *       GetRandom, which costs the QTSM no signature): the same path's
 *       round trip without the signing. Prints one line:
 *         op=O mode=M clients=N documents=D seconds=T rate=R errors=E
 *         first_error=S mean_ms=.. p50_ms=.. p99_ms=.. gap_p50_ms=..
 *         burst=.. doc_bytes=B guest_busy=F cpus=C
 *       rate is D / T, T from the common start to the last client's end;
 *       the latencies are per call; gap_p50_ms is the median time between
 *       two answers arriving (at any client): well under the mean gap
 *       (T / D) when answers come in bursts; burst is the mean number of
 *       answers per burst, a burst ending at a gap of a quarter of the mean
 *       gap or more (about 1 when answers come one at a time); guest_busy
 *       is the share of this machine's CPUs (/proc/stat) that was not idle
 *       during the run. While the clients run, a sign of life comes first,
 *       a line a second: `progress t=T calls=N finished=F` (on stderr when
 *       run here; before the answer when served).
 *   qtsm-load sample NONCE_HEX
 *       one document for that nonce, raw, on stdout.
 *   qtsm-load settle
 *       waits (at most 30 s) until this machine's CPUs have been idle for
 *       half a second (under 5 % busy), so that the work a run leaves
 *       behind does not fall into the parent's next measurement; prints
 *         settle_s=T busiest=COMM:SECONDS,...
 *       with the three processes or kernel threads that used the most CPU
 *       meanwhile.
 *   qtsm-load serve vsock:PORT|unix:PATH
 *       serves commands, one per connection: a line `run MODE CLIENTS
 *       SECONDS [OP]`, `sample NONCE_HEX` or `settle`, answered as above,
 *       then the connection is closed; `stop` ends the server. Inside the
 *       enclave the parent drives the benchmark this way, between its own
 *       measurements.
 *   qtsm-load ask hybrid:VSOCK_SOCKET:PORT|unix:PATH LINE
 *       on the parent: connects (hybrid vsock: `CONNECT PORT`, `OK ...`),
 *       retrying for up to 120 s while the enclave is not listening yet,
 *       sends LINE, copies the answer to stdout and the progress lines to
 *       stderr as they come (`live ask_t=T progress ...`, T its own seconds
 *       since sending LINE); prints its own wall time on stderr ("ask: N
 *       s"), which checks the enclave's clock.
 * The QTSM socket is libqtsm's: /run/qtsm.sock or $QTSM_SOCKET.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qtsm_lib.h"

#define MAX_CLIENTS 256
#define DOCUMENT_CAPACITY 0x6000
#define NONCE_SIZE 16
/* Latency histogram: bucket k holds calls of about 1.02^k microseconds. */
#define BUCKETS 1200
#define BUCKET_BASE 1.02
#define MAX_ARRIVALS 65536

typedef struct {
    long documents;
    long errors;
    int first_error;
    double latency_sum;
    double end;
    long document_bytes;
    unsigned histogram[BUCKETS];
} Worker;

typedef struct {
    double start;
    double deadline;
    uint8_t run_id[8];
    int ready_pipe[2];
    int go_pipe[2];
    int random;
    int finished; /* clients done (atomic) */
    Worker workers[MAX_CLIENTS];
    long arrivals_used;
    double arrivals[MAX_ARRIVALS];
} Shared;

static Shared* shared;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(char const* what)
{
    fprintf(stderr, "qtsm-load: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "qtsm-load: bad arguments (see the comment at the top of bench/qtsm_enclave_load.c)\n");
    exit(2);
}

static int write_all(int fd, void const* data, size_t size)
{
    uint8_t const* p = data;
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

/* ---- the load ---- */

static void* worker_main(void* argument)
{
    int index = (int)(intptr_t)argument;
    Worker* w = &shared->workers[index];
    static __thread uint8_t document[DOCUMENT_CAPACITY];
    int fd = qtsm_lib_init();
    if (fd < 0) {
        w->errors = 1;
        w->first_error = -errno;
    }
    char byte = 1;
    if (write_all(shared->ready_pipe[1], &byte, 1) < 0)
        die("ready pipe");
    /* All clients start together: the go pipe's write end closes. */
    while (read(shared->go_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    if (fd < 0) {
        w->end = now();
        __atomic_add_fetch(&shared->finished, 1, __ATOMIC_RELEASE);
        return NULL;
    }
    uint8_t nonce[NONCE_SIZE];
    memcpy(nonce, shared->run_id, 8);
    nonce[8] = (uint8_t)index;
    uint32_t sequence = 0;
    double t = now();
    while (t < shared->deadline) {
        ++sequence;
        memcpy(nonce + 9, &sequence, 4);
        nonce[13] = nonce[14] = nonce[15] = 0xa5;
        uint32_t length = sizeof(document);
        int status;
        if (shared->random) {
            length = 256;
            status = qtsm_get_random(fd, document, length);
        } else {
            status = qtsm_get_attestation(fd, NULL, 0, nonce, NONCE_SIZE, NULL, 0, document, &length);
        }
        double after = now();
        long slot = __atomic_fetch_add(&shared->arrivals_used, 1, __ATOMIC_RELAXED);
        if (slot < MAX_ARRIVALS)
            shared->arrivals[slot] = after;
        if (status != NO_ERROR || length == 0 || (!shared->random && !memmem(document, length, nonce, NONCE_SIZE))) {
            if (w->errors++ == 0)
                w->first_error = status != NO_ERROR ? status : 1000;
            if (status == INTERNAL_ERROR)
                break; /* the connection is gone */
        } else {
            __atomic_add_fetch(&w->documents, 1, __ATOMIC_RELAXED);
            w->document_bytes = length;
            double micros = (after - t) * 1e6;
            w->latency_sum += after - t;
            int bucket = micros <= 1 ? 0 : (int)(log(micros) / log(BUCKET_BASE));
            w->histogram[bucket < BUCKETS ? bucket : BUCKETS - 1]++;
        }
        t = after;
    }
    w->end = now();
    qtsm_lib_exit(fd);
    __atomic_add_fetch(&shared->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* The non-idle and total jiffies of all CPUs. */
static void cpu_times(double* busy, double* total)
{
    *busy = *total = 0;
    FILE* f = fopen("/proc/stat", "r");
    if (!f)
        return;
    unsigned long long v[10] = { 0 };
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
            &v[6], &v[7], &v[8], &v[9]) >= 4) {
        for (int i = 0; i < 8; ++i) /* guest and guest_nice are already in user */
            *total += (double)v[i];
        *busy = *total - (double)v[3] - (double)v[4];
    }
    fclose(f);
}

static double percentile(unsigned const* histogram, long count, double fraction)
{
    long target = (long)ceil(fraction * (double)count);
    long seen = 0;
    for (int k = 0; k < BUCKETS; ++k) {
        seen += histogram[k];
        if (seen >= target && count > 0)
            return pow(BUCKET_BASE, k + 0.5) / 1000.0;
    }
    return 0;
}

/* Runs the load; writes the result line into `out`. Returns 0 when every
 * call succeeded. */
static int compare_doubles(void const* a, void const* b)
{
    double x = *(double const*)a, y = *(double const*)b;
    return x < y ? -1 : x > y;
}

/* Sign of life while the clients run: a line a second on `fd`,
 *   progress t=T calls=N finished=F
 * (seconds since the start, calls answered so far, clients done), so that a
 * run that stops answering shows when it stopped. Waits until every
 * client has finished. */
static void watch_clients(int clients, int fd)
{
    double next = shared->start + 1;
    while (__atomic_load_n(&shared->finished, __ATOMIC_ACQUIRE) < clients) {
        usleep(200 * 1000);
        double t = now();
        if (fd < 0 || t < next)
            continue;
        next = t + 1;
        long calls = 0;
        for (int i = 0; i < clients; ++i)
            calls += __atomic_load_n(&shared->workers[i].documents, __ATOMIC_RELAXED);
        char line[128];
        int length = snprintf(line, sizeof(line), "progress t=%.1f calls=%ld finished=%d\n", t - shared->start, calls,
            __atomic_load_n(&shared->finished, __ATOMIC_RELAXED));
        (void)write_all(fd, line, (size_t)length);
    }
}

static int run_load(char const* mode, int clients, double seconds, char const* op, char* out, size_t out_size,
    int progress_fd)
{
    int processes = strcmp(mode, "procs") == 0;
    int random = strcmp(op, "random") == 0;
    if ((!processes && strcmp(mode, "threads") != 0) || (!random && strcmp(op, "attest") != 0) || clients < 1
        || clients > MAX_CLIENTS || seconds <= 0) {
        snprintf(out, out_size,
            "error: bad run arguments (MODE procs|threads, 1..%d clients, SECONDS > 0, attest|random)\n", MAX_CLIENTS);
        return 1;
    }
    if (!shared) {
        shared = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (shared == MAP_FAILED)
            die("mmap");
    }
    memset(shared, 0, sizeof(*shared));
    shared->random = random;
    if (getrandom(shared->run_id, sizeof(shared->run_id), 0) != sizeof(shared->run_id))
        die("getrandom");
    if (pipe2(shared->ready_pipe, O_CLOEXEC) < 0 || pipe2(shared->go_pipe, O_CLOEXEC) < 0)
        die("pipe");
    pid_t pids[MAX_CLIENTS];
    pthread_t threads[MAX_CLIENTS];
    for (int i = 0; i < clients; ++i) {
        if (processes) {
            pids[i] = fork();
            if (pids[i] < 0)
                die("fork");
            if (pids[i] == 0) {
                close(shared->go_pipe[1]);
                worker_main((void*)(intptr_t)i);
                _exit(0);
            }
        } else if (pthread_create(&threads[i], NULL, worker_main, (void*)(intptr_t)i) != 0) {
            die("pthread_create");
        }
    }
    for (int i = 0; i < clients; ++i) {
        char byte;
        ssize_t n = read(shared->ready_pipe[0], &byte, 1);
        if (n < 0 && errno == EINTR) {
            --i;
            continue;
        }
        if (n != 1)
            die("ready pipe");
    }
    double busy_before, total_before;
    cpu_times(&busy_before, &total_before);
    shared->start = now();
    shared->deadline = shared->start + seconds;
    close(shared->go_pipe[1]);
    watch_clients(clients, progress_fd);
    for (int i = 0; i < clients; ++i) {
        if (processes) {
            int status;
            while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR) {
            }
        } else {
            pthread_join(threads[i], NULL);
        }
    }
    double busy_after, total_after;
    cpu_times(&busy_after, &total_after);
    close(shared->go_pipe[0]);
    close(shared->ready_pipe[0]);
    close(shared->ready_pipe[1]);

    long documents = 0, errors = 0, bytes = 0;
    int first_error = 0;
    double end = shared->start, latency_sum = 0;
    static unsigned histogram[BUCKETS];
    memset(histogram, 0, sizeof(histogram));
    for (int i = 0; i < clients; ++i) {
        Worker const* w = &shared->workers[i];
        documents += w->documents;
        if (w->errors && !errors)
            first_error = w->first_error;
        errors += w->errors;
        latency_sum += w->latency_sum;
        if (w->end > end)
            end = w->end;
        if (w->document_bytes)
            bytes = w->document_bytes;
        for (int k = 0; k < BUCKETS; ++k)
            histogram[k] += w->histogram[k];
    }
    double elapsed = end - shared->start;
    long arrivals = shared->arrivals_used < MAX_ARRIVALS ? shared->arrivals_used : MAX_ARRIVALS;
    double gap_median = 0, burst = 0;
    if (arrivals > 1) {
        qsort(shared->arrivals, (size_t)arrivals, sizeof(double), compare_doubles);
        double mean_gap = (shared->arrivals[arrivals - 1] - shared->arrivals[0]) / (double)(arrivals - 1);
        long bursts = 1;
        for (long i = 0; i + 1 < arrivals; ++i) {
            shared->arrivals[i] = shared->arrivals[i + 1] - shared->arrivals[i];
            bursts += shared->arrivals[i] >= mean_gap / 4;
        }
        burst = (double)arrivals / (double)bursts;
        qsort(shared->arrivals, (size_t)(arrivals - 1), sizeof(double), compare_doubles);
        gap_median = shared->arrivals[(arrivals - 1) / 2] * 1000;
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    double total = total_after - total_before;
    snprintf(out, out_size,
        "op=%s mode=%s clients=%d documents=%ld seconds=%.3f rate=%.2f errors=%ld first_error=%d mean_ms=%.2f "
        "p50_ms=%.2f p99_ms=%.2f gap_p50_ms=%.3f burst=%.2f doc_bytes=%ld guest_busy=%.2f cpus=%ld\n",
        op, mode, clients, documents, elapsed, elapsed > 0 ? (double)documents / elapsed : 0.0, errors, first_error,
        documents ? latency_sum / (double)documents * 1000 : 0.0, percentile(histogram, documents, 0.5),
        percentile(histogram, documents, 0.99), gap_median, burst, bytes,
        total > 0 ? (busy_after - busy_before) / total : 0.0, cpus);
    return errors != 0 || documents == 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One document for the nonce, written to `fd`. */
static int sample(char const* nonce_hex, int fd)
{
    uint8_t nonce[256];
    size_t length = strlen(nonce_hex);
    if (length == 0 || length % 2 || length / 2 > sizeof(nonce))
        return 2;
    for (size_t i = 0; i < length / 2; ++i) {
        int high = hex_value(nonce_hex[2 * i]), low = hex_value(nonce_hex[2 * i + 1]);
        if (high < 0 || low < 0)
            return 2;
        nonce[i] = (uint8_t)(high << 4 | low);
    }
    static uint8_t document[DOCUMENT_CAPACITY];
    uint32_t size = sizeof(document);
    int qtsm = qtsm_lib_init();
    if (qtsm < 0)
        return 1;
    int status = qtsm_get_attestation(qtsm, NULL, 0, nonce, (uint32_t)(length / 2), NULL, 0, document, &size);
    qtsm_lib_exit(qtsm);
    if (status != NO_ERROR) {
        fprintf(stderr, "qtsm-load: qtsm_get_attestation: %d\n", status);
        return 1;
    }
    return write_all(fd, document, size) < 0;
}

/* ---- settling ---- */

#define MAX_TASKS 4096

typedef struct {
    int pid;
    char comm[32];
    double seconds;
} Task;

/* Every process's and kernel thread's CPU time so far. */
static int read_tasks(Task* tasks)
{
    int count = 0;
    DIR* proc = opendir("/proc");
    if (!proc)
        return 0;
    struct dirent* entry;
    double tick = (double)sysconf(_SC_CLK_TCK);
    while ((entry = readdir(proc)) != NULL && count < MAX_TASKS) {
        int pid = atoi(entry->d_name);
        if (pid <= 0)
            continue;
        char path[64], text[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        FILE* f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = 0;
        char* open = strchr(text, '(');
        char* close = strrchr(text, ')');
        if (!open || !close)
            continue;
        unsigned long long user = 0, system = 0;
        /* After the comm: state, then fields 4-13, utime (14), stime (15). */
        if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &user, &system) != 2)
            continue;
        Task* t = &tasks[count++];
        t->pid = pid;
        size_t length = (size_t)(close - open - 1);
        if (length >= sizeof(t->comm))
            length = sizeof(t->comm) - 1;
        memcpy(t->comm, open + 1, length);
        t->comm[length] = 0;
        t->seconds = (double)(user + system) / tick;
    }
    closedir(proc);
    return count;
}

static void settle(char* out, size_t out_size)
{
    static Task before[MAX_TASKS], after[MAX_TASKS];
    int before_count = read_tasks(before);
    double start = now();
    double busy0, total0, busy1, total1;
    cpu_times(&busy0, &total0);
    for (;;) {
        usleep(500 * 1000);
        cpu_times(&busy1, &total1);
        int idle = total1 > total0 && (busy1 - busy0) / (total1 - total0) < 0.05;
        busy0 = busy1;
        total0 = total1;
        if (idle || now() - start > 30)
            break;
    }
    double elapsed = now() - start;
    int after_count = read_tasks(after);
    /* The three that used the most CPU meanwhile (a task that ended is not seen). */
    for (int i = 0; i < after_count; ++i) {
        double used = after[i].seconds;
        for (int j = 0; j < before_count; ++j) {
            if (before[j].pid == after[i].pid) {
                used -= before[j].seconds;
                break;
            }
        }
        after[i].seconds = used;
    }
    int length = snprintf(out, out_size, "settle_s=%.2f busiest=", elapsed);
    for (int rank = 0; rank < 3; ++rank) {
        int best = -1;
        for (int i = 0; i < after_count; ++i) {
            if (after[i].seconds > 0 && (best < 0 || after[i].seconds > after[best].seconds))
                best = i;
        }
        if (best < 0)
            break;
        length += snprintf(out + length, out_size - (size_t)length, "%s%s:%.2f", rank ? "," : "", after[best].comm,
            after[best].seconds);
        after[best].seconds = 0;
    }
    snprintf(out + length, out_size - (size_t)length, "\n");
}

/* ---- the command channel ---- */

static int unix_socket(char const* path, struct sockaddr_un* address)
{
    memset(address, 0, sizeof(*address));
    address->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(address->sun_path))
        usage();
    strcpy(address->sun_path, path);
    return socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

static int serve(char const* endpoint)
{
    /* A parent that gave up on an answer must not end the enclave's app. */
    signal(SIGPIPE, SIG_IGN);
    int listener;
    if (strncmp(endpoint, "vsock:", 6) == 0) {
        struct sockaddr_vm address = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
            .svm_port = (unsigned)strtoul(endpoint + 6, NULL, 10) };
        listener = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (listener < 0 || bind(listener, (struct sockaddr*)&address, sizeof(address)) < 0)
            die("vsock bind");
    } else if (strncmp(endpoint, "unix:", 5) == 0) {
        struct sockaddr_un address;
        listener = unix_socket(endpoint + 5, &address);
        unlink(endpoint + 5);
        if (listener < 0 || bind(listener, (struct sockaddr*)&address, sizeof(address)) < 0)
            die("unix bind");
    } else {
        usage();
    }
    if (listen(listener, 8) < 0)
        die("listen");
    printf("qtsm-load: serving on %s\n", endpoint);
    fflush(stdout);
    for (;;) {
        int connection = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (connection < 0) {
            if (errno == EINTR)
                continue;
            die("accept");
        }
        char line[256];
        size_t used = 0;
        while (used + 1 < sizeof(line)) {
            ssize_t n = read(connection, line + used, 1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0 || line[used] == '\n')
                break;
            ++used;
        }
        line[used] = 0;
        char mode[16], op[16] = "attest", out[512];
        int clients;
        double seconds;
        if (strcmp(line, "stop") == 0) {
            close(connection);
            return 0;
        } else if (sscanf(line, "run %15s %d %lf %15s", mode, &clients, &seconds, op) >= 3) {
            run_load(mode, clients, seconds, op, out, sizeof(out), connection);
            (void)write_all(connection, out, strlen(out));
        } else if (strcmp(line, "settle") == 0) {
            settle(out, sizeof(out));
            (void)write_all(connection, out, strlen(out));
        } else if (strncmp(line, "sample ", 7) == 0) {
            if (sample(line + 7, connection) != 0)
                (void)write_all(connection, "error: sample failed\n", 21);
        } else {
            (void)write_all(connection, "error: unknown command\n", 23);
        }
        close(connection);
    }
}

/* Connects to the enclave's port through its hybrid vsock socket (or to a
 * Unix socket); -1 while it is not there yet. */
static int connect_endpoint(char const* endpoint)
{
    char path[108];
    unsigned port = 0;
    int hybrid = strncmp(endpoint, "hybrid:", 7) == 0;
    if (hybrid) {
        char const* colon = strrchr(endpoint + 7, ':');
        if (!colon || (size_t)(colon - (endpoint + 7)) >= sizeof(path))
            usage();
        memcpy(path, endpoint + 7, (size_t)(colon - (endpoint + 7)));
        path[colon - (endpoint + 7)] = 0;
        port = (unsigned)strtoul(colon + 1, NULL, 10);
    } else if (strncmp(endpoint, "unix:", 5) == 0) {
        snprintf(path, sizeof(path), "%s", endpoint + 5);
    } else {
        usage();
    }
    struct sockaddr_un address;
    int fd = unix_socket(path, &address);
    if (fd < 0)
        die("socket");
    if (connect(fd, (struct sockaddr*)&address, sizeof(address)) < 0) {
        close(fd);
        return -1;
    }
    if (!hybrid)
        return fd;
    char line[64];
    int length = snprintf(line, sizeof(line), "CONNECT %u\n", port);
    if (write_all(fd, line, (size_t)length) < 0) {
        close(fd);
        return -1;
    }
    /* "OK <port>\n", byte by byte so that no answer byte is taken. */
    size_t used = 0;
    while (used + 1 < sizeof(line)) {
        ssize_t n = read(fd, line + used, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || line[used] == '\n')
            break;
        ++used;
    }
    line[used] = 0;
    if (strncmp(line, "OK ", 3) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int ask(char const* endpoint, char const* command)
{
    double start = now();
    int fd;
    while ((fd = connect_endpoint(endpoint)) < 0) {
        if (now() - start > 120) {
            fprintf(stderr, "qtsm-load: %s: not reachable for 120 s\n", endpoint);
            return 1;
        }
        usleep(200 * 1000);
    }
    double connected = now();
    if (write_all(fd, command, strlen(command)) < 0 || write_all(fd, "\n", 1) < 0)
        die("send");
    /* The answer goes to stdout; the enclave's `progress` lines, which
     * come before it, go to stderr as they arrive (a sign of life), each
     * with this side's own time since the command was sent. */
    static uint8_t buffer[65536];
    size_t used = 0;
    int at_line_start = 1, progress = 0;
    for (;;) {
        ssize_t n = read(fd, buffer + used, sizeof(buffer) - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("read");
        if (n == 0)
            break;
        used += (size_t)n;
        size_t done = 0;
        while (done < used) {
            if (at_line_start) {
                if (used - done < 9 && memcmp(buffer + done, "progress ", used - done) == 0)
                    break; /* too short to tell yet */
                progress = used - done >= 9 && memcmp(buffer + done, "progress ", 9) == 0;
                at_line_start = 0;
                if (progress) {
                    char stamp[48];
                    int length = snprintf(stamp, sizeof(stamp), "live ask_t=%.1f ", now() - connected);
                    (void)write_all(2, stamp, (size_t)length);
                }
            }
            uint8_t* newline = memchr(buffer + done, '\n', used - done);
            size_t end = newline ? (size_t)(newline - buffer) + 1 : used;
            if (write_all(progress ? 2 : 1, buffer + done, end - done) < 0)
                die("write");
            done = end;
            if (newline)
                at_line_start = 1;
        }
        memmove(buffer, buffer + done, used - done);
        used -= done;
    }
    if (used > 0 && write_all(1, buffer, used) < 0)
        die("write");
    close(fd);
    fprintf(stderr, "ask: %.3f s\n", now() - connected);
    return 0;
}

int main(int argc, char** argv)
{
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "run") == 0) {
        char out[512];
        int status
            = run_load(argv[2], atoi(argv[3]), atof(argv[4]), argc == 6 ? argv[5] : "attest", out, sizeof(out), 2);
        fputs(out, stdout);
        return status;
    }
    if (argc == 2 && strcmp(argv[1], "settle") == 0) {
        char out[512];
        settle(out, sizeof(out));
        fputs(out, stdout);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "sample") == 0)
        return sample(argv[2], 1);
    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2]);
    if (argc == 4 && strcmp(argv[1], "ask") == 0)
        return ask(argv[2], argv[3]);
    usage();
}
