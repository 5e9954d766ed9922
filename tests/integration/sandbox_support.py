"""Helpers for sandbox tests: a tiny image tree of C test programs, leftover checks.

``tiny_tree(dest)`` compiles one small C program per tracing edge case (gcc is
required) and lays them out with the host's libc and dynamic loader, plus data
files and symlinks the programs reach.  ``leftovers(token)`` lists processes
whose argv carries ``token``: every test passes a fresh token to the programs it
starts, so a leftover is always the test's own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from tests.tools import require_tool

PROGRAMS = {
    "hello": r"""
#include <fcntl.h>
#include <unistd.h>
int main(void) {
    int fd = open("/data/hello.txt", O_RDONLY);
    if (fd >= 0) close(fd);
    return write(1, "hello\n", 6) == 6 ? 0 : 1;
}
""",
    "fork": r"""
#include <fcntl.h>
#include <unistd.h>
#include <sys/wait.h>
int main(void) {
    pid_t pid = fork();
    if (pid == 0) { close(open("/data/fork-child.txt", O_RDONLY)); _exit(5); }
    int status;
    waitpid(pid, &status, 0);
    close(open("/data/fork-parent.txt", O_RDONLY));
    return WEXITSTATUS(status);
}
""",
    "vfork": r"""
#include <unistd.h>
#include <sys/wait.h>
int main(void) {
    pid_t pid = vfork();
    if (pid == 0) { execl("/bin/hello", "hello", (char *)0); _exit(99); }
    int status;
    waitpid(pid, &status, 0);
    return WEXITSTATUS(status);
}
""",
    "threads": r"""
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void *work(void *arg) {
    char path[64];
    snprintf(path, sizeof path, "/data/thread-%ld.txt", (long)arg);
    int fd = open(path, O_RDONLY);
    if (fd >= 0) close(fd);
    return 0;
}
int main(void) {
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], 0, work, (void *)i);
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    return 0;
}
""",
    "exec_thread": r"""
#include <pthread.h>
#include <unistd.h>
static void *run(void *arg) {
    (void)arg;
    execl("/bin/hello", "hello", (char *)0);
    return 0;
}
int main(void) {
    pthread_t t;
    pthread_create(&t, 0, run, 0);
    for (;;) pause();
}
""",
    "dirfd": r"""
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    int dir = open("/data/dir", O_RDONLY | O_DIRECTORY);
    close(openat(dir, "inner.txt", O_RDONLY));
    struct stat st;
    return fstatat(dir, "sub/x.txt", &st, 0);
}
""",
    "chdir": r"""
#include <fcntl.h>
#include <unistd.h>
int main(void) {
    if (chdir("/data/dir") != 0) return 1;
    close(open("inner.txt", O_RDONLY));
    if (chdir("sub") != 0) return 2;
    if (access("x.txt", R_OK) != 0) return 3;
    close(open("../../a.txt", O_RDONLY));
    return 0;
}
""",
    "symlinks": r"""
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    struct stat st;
    close(open("/data/link-to-file", O_RDONLY));
    close(open("/data/dirlink/inner.txt", O_RDONLY));
    close(open("/data/abslink", O_RDONLY));
    return lstat("/data/chain", &st);
}
""",
    "dlopen": r"""
#include <dlfcn.h>
int main(void) {
    void *handle = dlopen("/plugin/libplugin.so", RTLD_NOW);
    if (!handle) return 2;
    int (*value)(void) = (int (*)(void))dlsym(handle, "plugin_value");
    return value && value() == 42 ? 0 : 1;
}
""",
    "ignore_term": r"""
#include <signal.h>
#include <unistd.h>
int main(void) {
    signal(SIGTERM, SIG_IGN);
    for (;;) pause();
}
""",
    "daemon": r"""
#include <unistd.h>
#include <sys/wait.h>
int main(void) {
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        if (fork() == 0) { for (;;) pause(); }
        _exit(0);
    }
    waitpid(pid, 0, 0);
    return 0;
}
""",
    "exit_code": r"""
#include <stdlib.h>
int main(int argc, char **argv) { return argc > 1 ? atoi(argv[1]) : 0; }
""",
    "signals": r"""
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
static volatile int hits;
static void on_usr1(int sig) { (void)sig; hits++; }
int main(void) {
    signal(SIGUSR1, on_usr1);
    for (int i = 0; i < 3; i++) raise(SIGUSR1);
    pid_t pid = fork();
    if (pid == 0) { raise(SIGSTOP); _exit(7); }
    int status;
    waitpid(pid, &status, WUNTRACED);
    if (!WIFSTOPPED(status)) return 10;
    kill(pid, SIGCONT);
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 7) return 11;
    return hits == 3 ? 0 : 12;
}
""",
    "fds": r"""
#include <dirent.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int count = 0;
    while ((e = readdir(d))) if (e->d_name[0] != '.') count++;
    printf("%d\n", count);
    return 0;
}
""",
    # A hostile program: path strings far past PATH_MAX, calls without end, and an
    # argument vector far past the kernel's limit.
    "flood": r"""
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static char path[100000];
static char *args[5000];
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    struct stat st;
    memset(path, 'a', sizeof path - 1);
    path[0] = '/';
    for (int i = 0; i < n; i++) stat(path, &st);
    for (int i = 0; i < 4999; i++) args[i] = path;
    execv("/bin/hello", args); /* fails with E2BIG */
    return 0;
}
""",
}

PLUGIN = "int plugin_value(void) { return 42; }\n"

DATA_FILES = (
    "hello.txt",
    "fork-child.txt",
    "fork-parent.txt",
    "thread-0.txt",
    "thread-1.txt",
    "thread-2.txt",
    "thread-3.txt",
    "a.txt",
    "target.txt",
    "dir/inner.txt",
    "dir/sub/x.txt",
)


def _runtime_libraries(binary: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            found.append(Path(match.group(1)))
    return found


def tiny_tree(dest: Path) -> Path:
    """Build the test tree at ``dest`` (created) and return it."""
    gcc = require_tool("gcc")
    work = dest.parent / (dest.name + ".build")
    work.mkdir(parents=True)
    (dest / "bin").mkdir(parents=True)
    for name, source in PROGRAMS.items():
        src = work / f"{name}.c"
        src.write_text(source)
        subprocess.run(
            [gcc, "-O1", "-pthread", "-o", str(dest / "bin" / name), str(src), "-ldl"],
            check=True,
        )
    (dest / "plugin").mkdir()
    (work / "plugin.c").write_text(PLUGIN)
    subprocess.run(
        [
            gcc,
            "-shared",
            "-fPIC",
            "-o",
            str(dest / "plugin" / "libplugin.so"),
            str(work / "plugin.c"),
        ],
        check=True,
    )
    libs: set[Path] = set()
    for binary in (dest / "bin").iterdir():
        libs.update(_runtime_libraries(binary))
    for lib in libs:
        target = dest / lib.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), target)
    data = dest / "data"
    for rel in DATA_FILES:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text(rel + "\n")
    (data / "link-to-file").symlink_to("target.txt")
    (data / "dirlink").symlink_to("dir")
    (data / "abslink").symlink_to("/data/target.txt")
    (data / "chain").symlink_to("link-to-file")
    (dest / "etc").mkdir()
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    for name in ("tmp", "proc", "dev", "sys"):
        (dest / name).mkdir()
    (dest / "tmp").chmod(0o1777)
    shutil.rmtree(work)
    return dest


def new_token() -> str:
    return "ocislim-test-" + uuid.uuid4().hex[:12]


def leftovers(token: str) -> list[int]:
    """Pids of live processes with ``token`` in their argv."""
    found = []
    needle = token.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry))
    return found
