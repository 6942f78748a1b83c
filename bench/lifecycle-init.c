/*
 * The /init of bench/lifecycle's QEMU guest: what qtbox's init does up to
 * the heartbeat (src/init/init.cpp, run()), in the same order and with the
 * same system calls, so that QEMU's "ready" comes at the same point of the
 * boot as `qt enclave start`'s:
 *   1. mounts proc, sysfs and devtmpfs; fds 0-2 on /dev/console;
 *   2. loads the modules /etc/qtbox/modules lists (the EIF's bootstrap
 *      ramdisk: virtio_mmio and the vsock transport), finit_module each;
 *   3. brings lo up;
 *   4. the heartbeat: connects to vsock port 9000 of the host and sends its
 *      clock, then closes. qtbox's init connects to CID 3, which only
 *      qtbox's VMM serves; vhost-vsock drops every packet not addressed to
 *      the host's CID 2, so this one goes there (`vsock-tool clock-check`
 *      in the parent waits for it). A transport still probing is retried
 *      every 50 ms for 30 s, as init does; anything else is final.
 * Then it prints one line and waits to be killed (the app would run here).
 * Built statically by bench/lifecycle and put in a third initrd, whose /init
 * replaces qtbox's in the guest's root; the other two initrds are the EIF's
 * own ramdisks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HEARTBEAT_PORT 9000
#define HOST_CID 2

static void halt(char const* what)
{
    printf("bench-init: %s: %s\n", what, strerror(errno));
    fflush(stdout);
    for (;;)
        pause();
}

static void load_modules(void)
{
    FILE* list = fopen("/etc/qtbox/modules", "r");
    if (!list)
        halt("/etc/qtbox/modules");
    char path[512];
    while (fgets(path, sizeof(path), list)) {
        path[strcspn(path, "\r\n")] = 0;
        if (!path[0] || path[0] == '#')
            continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            halt(path);
        if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
            halt(path);
        close(fd);
    }
    fclose(list);
}

static void loopback_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq request;
    memset(&request, 0, sizeof(request));
    strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &request) < 0)
        halt("SIOCGIFFLAGS lo");
    request.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &request) < 0)
        halt("SIOCSIFFLAGS lo");
    close(fd);
}

static void heartbeat(void)
{
    struct sockaddr_vm address;
    memset(&address, 0, sizeof(address));
    address.svm_family = AF_VSOCK;
    address.svm_cid = HOST_CID;
    address.svm_port = HEARTBEAT_PORT;
    for (int tries = 0;; ++tries) {
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            halt("socket AF_VSOCK");
        if (connect(fd, (struct sockaddr*)&address, sizeof(address)) == 0) {
            struct timespec now;
            clock_gettime(CLOCK_REALTIME, &now);
            char text[32];
            int n = snprintf(text, sizeof(text), "%" PRIu64 "\n", (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
            if (write(fd, text, (size_t)n) != n)
                halt("heartbeat send");
            close(fd);
            return;
        }
        int error = errno;
        close(fd);
        int probing = error == ENODEV || error == ENETUNREACH || error == EHOSTUNREACH || error == EADDRNOTAVAIL
            || error == EAFNOSUPPORT;
        if (!probing || tries >= 600) {
            errno = error;
            halt("heartbeat connect");
        }
        usleep(50 * 1000);
    }
}

int main(void)
{
    mkdir("/proc", 0555);
    mkdir("/sys", 0555);
    mkdir("/dev", 0755);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0
        || mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0
        || mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0)
        halt("mount");
    if (fcntl(STDERR_FILENO, F_GETFD) < 0) {
        int fd = open("/dev/console", O_RDWR | O_NOCTTY);
        for (int target = 0; fd >= 0 && target <= 2; ++target)
            dup2(fd, target);
    }
    load_modules();
    loopback_up();
    heartbeat();
    printf("bench-init: heartbeat sent\n");
    fflush(stdout);
    for (;;)
        pause();
}
