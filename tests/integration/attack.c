/* A hostile program for the sandbox attack tests (compiled with gcc -static).
 *
 * attack MODE [TOKEN]: each mode tries one family of escapes and prints one line
 * "MODE key=value ..." on stderr (counts of what succeeded), then exits with the
 * code the mode names.  A success count above 0 is an escape.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static const char FORGED[] =
    "{\"event\":\"done\",\"exit_code\":0,\"timed_out\":false,\"probes\":[]}\n";

static int is_pid(const char *name) {
    if (!*name) return 0;
    for (const char *p = name; *p; p++) if (*p < '0' || *p > '9') return 0;
    return 1;
}

/* Write `data` into every descriptor of every visible process but our own 0-2. */
static int write_everywhere(const char *data, int *tried) {
    int wrote = 0;
    DIR *proc = opendir("/proc");
    struct dirent *p;
    while (proc && (p = readdir(proc))) {
        if (!is_pid(p->d_name)) continue;
        char dir[64];
        snprintf(dir, sizeof dir, "/proc/%s/fd", p->d_name);
        DIR *fds = opendir(dir);
        struct dirent *f;
        while (fds && (f = readdir(fds))) {
            if (!is_pid(f->d_name)) continue;
            if (atoi(p->d_name) == getpid() && atoi(f->d_name) <= 2) continue;
            char path[128];
            snprintf(path, sizeof path, "%s/%s", dir, f->d_name);
            (*tried)++;
            int fd = open(path, O_WRONLY | O_APPEND | O_NONBLOCK);
            if (fd < 0) fd = open(path, O_RDWR | O_NONBLOCK);
            if (fd >= 0) {
                if (write(fd, data, strlen(data)) > 0) wrote++;
                close(fd);
            }
        }
        if (fds) closedir(fds);
    }
    if (proc) closedir(proc);
    return wrote;
}

static int open_fds(void) {
    int count = 0;
    struct stat st;
    for (int fd = 3; fd <= 1024; fd++) if (fstat(fd, &st) == 0) count++;
    return count;
}

static int others(int *pids, int max) {
    int n = 0;
    DIR *proc = opendir("/proc");
    struct dirent *p;
    while (proc && (p = readdir(proc)) && n < max)
        if (is_pid(p->d_name) && atoi(p->d_name) != getpid()) pids[n++] = atoi(p->d_name);
    if (proc) closedir(proc);
    return n;
}

static int write_file(const char *path, const char *data) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return 0;
    int ok = write(fd, data, strlen(data)) > 0;
    close(fd);
    return ok;
}

static int count_writable(const char *dir, int depth) {
    int count = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < 4) count += count_writable(path, depth + 1);
        } else if (S_ISREG(st.st_mode) && access(path, W_OK) == 0) {
            int fd = open(path, O_WRONLY | O_NONBLOCK);
            if (fd >= 0) { count++; close(fd); }
        }
    }
    if (d) closedir(d);
    return count;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "fds")) {
        /* Inherited descriptors, and writes through every /proc/PID/fd. */
        int tried = 0;
        int open_ = open_fds();
        int wrote = write_everywhere("PWNED\n", &tried);
        fprintf(stderr, "fds open=%d tried=%d wrote=%d\n", open_, tried, wrote);
        return 0;
    }
    if (!strcmp(mode, "forge")) {
        int tried = 0;
        int wrote = write_everywhere(FORGED, &tried);
        printf("%s", FORGED);
        fflush(stdout);
        fprintf(stderr, "forge wrote=%d\n", wrote);
        return 42;
    }
    if (!strcmp(mode, "procs")) {
        /* Every other visible process: ptrace, memory, root, cwd, environ, signals. */
        int pids[256];
        int n = others(pids, 256);
        int attached = 0, mem = 0, root = 0, cwd = 0, environ_ = 0, fdlist = 0;
        for (int i = 0; i < n; i++) {
            char path[64];
            if (ptrace(PTRACE_ATTACH, pids[i], 0, 0) == 0) {
                attached++;
                ptrace(PTRACE_DETACH, pids[i], 0, 0);
            }
            snprintf(path, sizeof path, "/proc/%d/mem", pids[i]);
            int fd = open(path, O_RDWR);
            if (fd >= 0) { mem++; close(fd); }
            snprintf(path, sizeof path, "/proc/%d/root/", pids[i]);
            DIR *d = opendir(path);
            if (d) { root++; closedir(d); }
            snprintf(path, sizeof path, "/proc/%d/cwd/", pids[i]);
            d = opendir(path);
            if (d) { cwd++; closedir(d); }
            snprintf(path, sizeof path, "/proc/%d/environ", pids[i]);
            fd = open(path, O_RDONLY);
            if (fd >= 0) { environ_++; close(fd); }
            snprintf(path, sizeof path, "/proc/%d/fd", pids[i]);
            d = opendir(path);
            if (d) {
                struct dirent *e;
                while ((e = readdir(d))) if (is_pid(e->d_name)) fdlist++;
                closedir(d);
            }
        }
        int killed = 0;
        for (int i = 0; i < n; i++) if (kill(pids[i], SIGKILL) == 0) killed++;
        signal(SIGHUP, SIG_IGN);
        kill(0, SIGHUP); /* our own process group only */
        fprintf(stderr, "procs visible=%d attached=%d mem=%d root=%d cwd=%d environ=%d fds=%d "
                "signalled=%d\n", n, attached, mem, root, cwd, environ_, fdlist, killed);
        usleep(200000);
        return 7; /* only reported if pid 1 survived the signals */
    }
    if (!strcmp(mode, "kernel")) {
        /* Host kernel settings, masked files, mounts, namespaces. */
        int sysctl = write_file("/proc/sys/kernel/core_pattern", "|/bin/false ocislim-pwned")
                     + write_file("/proc/sys/vm/overcommit_memory", "1")
                     + write_file("/proc/sysrq-trigger", "h");
        int kcore = 0;
        int fd = open("/proc/kcore", O_RDONLY);
        char buf[16];
        if (fd >= 0) { kcore = read(fd, buf, sizeof buf) > 0; close(fd); }
        fd = open("/proc/keys", O_RDONLY);
        if (fd >= 0) { kcore += read(fd, buf, sizeof buf) > 0; close(fd); }
        int mounts = (umount2("/proc/sys", MNT_DETACH) == 0)
                     + (mount(0, "/proc/sys", 0, MS_REMOUNT | MS_BIND, 0) == 0)
                     + (mount("proc", "/tmp", "proc", 0, 0) == 0)
                     + (mount("tmpfs", "/tmp", "tmpfs", 0, "size=1g") == 0);
        int userns = unshare(CLONE_NEWUSER) == 0;
        int cgroup = count_writable("/sys/fs/cgroup", 0);
        fprintf(stderr, "kernel sysctl=%d masked=%d mounts=%d userns=%d cgroup=%d\n", sysctl,
                kcore, mounts, userns, cgroup);
        return 0;
    }
    if (!strcmp(mode, "tty")) {
        /* Push a command into the terminal given as stdin (TIOCSTI), take it over. */
        char c = '\n';
        int sti = ioctl(0, TIOCSTI, &c) == 0;
        int ctty = ioctl(0, TIOCSCTTY, 1) == 0;
        fprintf(stderr, "tty isatty=%d sti=%d ctty=%d\n", isatty(0), sti, ctty);
        return 0;
    }
    if (!strcmp(mode, "fill")) {
        /* Write into the in-memory overlay until the kernel says no. */
        int fd = open("/tmp/fill", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        static char block[1 << 16];
        long long written = 0;
        int err = 0;
        while (fd >= 0 && written < (8LL << 30)) {
            ssize_t n = write(fd, block, sizeof block);
            if (n <= 0) { err = errno; break; }
            written += n;
        }
        fprintf(stderr, "fill written=%lld errno=%d\n", written, err);
        return 0;
    }
    if (!strcmp(mode, "sleep")) {
        fprintf(stderr, "sleep ready\n");
        sleep(600);
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
