/* Boot timer for bench/boot (runs inside the parent-instance simulator).
 *
 * Usage: boot-timer MARKER GUEST_MIB TIMEOUT_S -- COMMAND [ARGS...]
 *
 * Starts COMMAND with its stdout on a pipe, and reports how long it took
 * from the fork to the first output line containing MARKER (the guest
 * app's first console line). At that moment it also reads the process's
 * /proc/PID/smaps: total RSS, the RSS of its guest-memory mapping (the
 * largest mapping of at least GUEST_MIB MiB), and the difference, which is
 * the monitor's own footprint. Then it gives COMMAND EXIT_GRACE_MS to end
 * by itself (the guest reboots once its app is done) before killing it; a
 * marker that has not appeared after TIMEOUT_S seconds kills it too. It
 * prints one line:
 *
 *   elapsed_ms=N rss_kib=N guest_rss_kib=N own_rss_kib=N status=N
 *
 * elapsed_ms=-1 when the marker never appeared. COMMAND's output is copied
 * to stderr for the log. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_GRACE_MS 20000.0

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void sample(pid_t pid, long guest_kib, long *total, long *guest)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
    FILE *f = fopen(path, "r");
    *total = *guest = 0;
    if (!f)
        return;
    long size = 0, best_size = 0;
    while (fgets(line, sizeof(line), f)) {
        long value;
        if (sscanf(line, "Size: %ld kB", &value) == 1) {
            size = value;
        } else if (sscanf(line, "Rss: %ld kB", &value) == 1) {
            *total += value;
            if (size >= guest_kib && size > best_size) {
                best_size = size;
                *guest = value;
            }
        }
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 6 || strcmp(argv[4], "--") != 0) {
        fprintf(stderr, "usage: boot-timer MARKER GUEST_MIB TIMEOUT_S -- COMMAND [ARGS...]\n");
        return 2;
    }
    const char *marker = argv[1];
    long guest_kib = atol(argv[2]) * 1024;
    double timeout_ms = atof(argv[3]) * 1000.0;
    int out[2];
    if (pipe(out) < 0)
        return 1;
    double start = now_ms();
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        close(out[0]);
        close(out[1]);
        execvp(argv[5], argv + 5);
        perror(argv[5]);
        _exit(127);
    }
    close(out[1]);
    char buffer[4096], line[8192];
    size_t used = 0;
    double elapsed = -1;
    long total = 0, guest = 0;
    int open_pipe = 1;
    while (open_pipe && elapsed < 0 && now_ms() - start < timeout_ms) {
        struct pollfd p = { out[0], POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(out[0], buffer, sizeof(buffer));
        if (n <= 0) {
            open_pipe = 0;
            break;
        }
        fwrite(buffer, 1, (size_t)n, stderr);
        for (ssize_t i = 0; i < n; ++i) {
            if (used < sizeof(line) - 1)
                line[used++] = buffer[i];
            if (buffer[i] == '\n' || used == sizeof(line) - 1) {
                line[used] = 0;
                if (elapsed < 0 && strstr(line, marker)) {
                    elapsed = now_ms() - start;
                    sample(pid, guest_kib, &total, &guest);
                }
                used = 0;
            }
        }
    }
    int status = 0;
    double deadline = elapsed < 0 ? timeout_ms : elapsed + EXIT_GRACE_MS;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (now_ms() - start >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        struct pollfd p = { open_pipe ? out[0] : -1, POLLIN, 0 };
        if (poll(&p, 1, 100) > 0) {
            ssize_t n = read(out[0], buffer, sizeof(buffer));
            if (n > 0)
                fwrite(buffer, 1, (size_t)n, stderr);
            else
                open_pipe = 0;
        }
    }
    printf("elapsed_ms=%.0f rss_kib=%ld guest_rss_kib=%ld own_rss_kib=%ld status=%d\n", elapsed, total, guest,
        total - guest, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return elapsed < 0;
}
