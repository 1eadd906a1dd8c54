/*
 * minibox-launcher: the `minibox` command. It starts Python on minibox's CLI; for
 * `minibox run` as root it first forks one helper process.
 *
 * Why: moving a process into a cgroup takes a global kernel lock that, when it has been
 * idle, first waits for an RCU grace period (rcu_sync_enter() in kernel/rcu/sync.c),
 * often 10 ms or more here: the largest single cost of starting a container, for runc
 * and crun too. Once a mover has waited, later movers do not, until the lock has been
 * idle for another grace period. The helper moves itself to the cgroup it is already
 * in (which changes nothing), at once, so the wait overlaps with Python's start, and
 * repeats that every 2 ms so the lock stays warm until minibox has moved the container
 * and closes the pipe the helper watches. minibox/cgroups/warm.py narrates the helper's
 * steps under --explain and reaps it.
 *
 * The interpreter and the import paths are compiled in by .ci/setup.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MINIBOX_PYTHON
#error "MINIBOX_PYTHON and MINIBOX_PATHS must be defined by the build (.ci/setup)"
#endif

/* cgroup.procs of our own group in some hierarchy (the kernel lock is global). */
static int own_procs_file(char *out, size_t size)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    char line[4096];
    int found = 0;
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *ctrls = strchr(line, ':');
        char *path = ctrls ? strchr(ctrls + 1, ':') : NULL;
        if (!path)
            continue;
        *path++ = '\0';
        ctrls++;
        path[strcspn(path, "\n")] = '\0';
        if (strcmp(path, "/") == 0)
            path = "";
        char first[256];
        snprintf(first, sizeof first, "%s", ctrls);
        first[strcspn(first, ",")] = '\0';
        if (*first)
            snprintf(out, size, "/sys/fs/cgroup/%s%s/cgroup.procs", first, path);
        else
            snprintf(out, size, "/sys/fs/cgroup%s/cgroup.procs", path);
        struct stat st;
        found = stat(out, &st) == 0;
    }
    fclose(f);
    return found;
}

static void helper(const char *procs, int done_fd)
{
    char me[32];
    int n = snprintf(me, sizeof me, "%d", getpid());
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int fd = open(procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            break; /* only an optimisation: the real move works without it */
        if (write(fd, me, (size_t)n) < 0) {
            close(fd);
            break;
        }
        close(fd);
        struct pollfd p = {.fd = done_fd, .events = POLLIN};
        if (poll(&p, 1, 2) != 0)
            break; /* minibox closed its end: the container has been moved */
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 5)
            break; /* never outstay a stuck minibox */
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    /* The verb comes after the global flags (--root DIR, --data-root DIR, or =DIR). */
    int v = 1;
    while (v < argc) {
        if ((strcmp(argv[v], "--root") == 0 || strcmp(argv[v], "--data-root") == 0) &&
            v + 1 < argc)
            v += 2;
        else if (strncmp(argv[v], "--root=", 7) == 0 || strncmp(argv[v], "--data-root=", 12) == 0)
            v += 1;
        else
            break;
    }
    if (v < argc && strcmp(argv[v], "run") == 0 && geteuid() == 0) {
        char procs[4096];
        int p[2];
        if (own_procs_file(procs, sizeof procs) && pipe(p) == 0) {
            pid_t pid = fork();
            if (pid == 0) {
                close(p[1]);
                helper(procs, p[0]);
            }
            close(p[0]);
            if (pid > 0) {
                char env[4200];
                snprintf(env, sizeof env, "%d:%d:%s", pid, p[1], procs);
                setenv("MINIBOX_WARM", env, 1);
            } else {
                close(p[1]);
            }
        }
    }
    /* python -S -c CODE ARGS...: -S skips site.py, which the paths below replace. */
    char **args = calloc((size_t)argc + 4, sizeof *args);
    int n = 0;
    args[n++] = MINIBOX_PYTHON;
    args[n++] = "-S";
    args[n++] = "-c";
    /* The cycle collector starts off: minibox/cli/main.py turns it back on for the
     * verbs that want it. minibox.bundle serves minibox's modules from one file. */
    args[n++] = "import gc; gc.disable(); import sys; sys.path[0:0] = [" MINIBOX_PATHS "]; "
                "import minibox.bundle; minibox.bundle.install(); "
                "from minibox.cli.main import entry; entry()";
    for (int i = 1; i < argc; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    execv(MINIBOX_PYTHON, args);
    perror("minibox: cannot start " MINIBOX_PYTHON);
    return 125;
}
