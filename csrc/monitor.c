/*
 * minibox-monitor: the small process that stays with a detached container.
 *
 * minibox (Python) clones the container's init, then execs this program in the same
 * process, so the init's parent is now a few hundred kilobytes of C instead of a whole
 * Python interpreter (the role conmon plays for podman). It:
 *   - copies the container's stdout and stderr, line by line, into the log file in
 *     docker's json-file format: {"log":"...","stream":"stdout","time":"RFC3339Nano"};
 *   - reaps the init when it ends (SIGCHLD through a signalfd(2), no polling);
 *   - then execs the finisher (minibox's Python side) with the wait status appended,
 *     which records the exit code, removes the cgroup and applies --rm / --restart.
 *
 * usage: minibox-monitor LOGFILE PID OUT_FD ERR_FD FINISHER [ARG...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 16384

struct stream {
    int fd;
    const char *name;
    char buf[LINE_MAX_BYTES];
    size_t len;
};

static int log_fd = -1;

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* a full disk must not kill the container's monitor */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* One JSON log record for one line (the newline included, as docker keeps it). */
static void emit(const char *stream, const char *line, size_t n)
{
    static char out[LINE_MAX_BYTES * 6 + 128];
    struct timespec ts;
    struct tm tm;
    size_t o = 0;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    o += (size_t)snprintf(out + o, sizeof out - o, "{\"log\":\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c == '\t') {
            out[o++] = '\\';
            out[o++] = 't';
        } else if (c == '\r') {
            out[o++] = '\\';
            out[o++] = 'r';
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, sizeof out - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    o += (size_t)snprintf(out + o, sizeof out - o,
                          "\",\"stream\":\"%s\",\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ\"}\n",
                          stream, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                          tm.tm_min, tm.tm_sec, ts.tv_nsec);
    write_all(log_fd, out, o);
}

/* Read what is there; emit every complete line; a full buffer is emitted as is. */
static int pump(struct stream *s)
{
    ssize_t r = read(s->fd, s->buf + s->len, sizeof s->buf - s->len);
    if (r < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (r == 0)
        return 0;
    s->len += (size_t)r;
    size_t start = 0;
    for (size_t i = 0; i < s->len; i++) {
        if (s->buf[i] == '\n') {
            emit(s->name, s->buf + start, i - start + 1);
            start = i + 1;
        }
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
    if (s->len == sizeof s->buf) {
        emit(s->name, s->buf, s->len);
        s->len = 0;
    }
    return 1;
}

static void flush_partial(struct stream *s)
{
    if (s->len) {
        emit(s->name, s->buf, s->len);
        s->len = 0;
    }
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: minibox-monitor LOGFILE PID OUT_FD ERR_FD FINISHER [ARG...]\n");
        return 125;
    }
    pid_t pid = (pid_t)atoi(argv[2]);
    struct stream streams[2] = {
        {.fd = atoi(argv[3]), .name = "stdout"},
        {.fd = atoi(argv[4]), .name = "stderr"},
    };
    log_fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

    /* SIGCHLD arrives as a readable signalfd, in the same poll as the pipes. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    /* The monitor outlives the terminal and the CLI that started it. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    int status = 0, done = 0;
    while (!done) {
        /* Reap first: the init may have ended before this program started, while its
         * SIGCHLD went to the Python process that exec'd us and was discarded. */
        pid_t w;
        while ((w = waitpid(-1, &status, WNOHANG)) > 0) {
            if (w == pid)
                done = 1;
        }
        if (done)
            break;
        struct pollfd fds[3] = {
            {.fd = streams[0].fd, .events = POLLIN},
            {.fd = streams[1].fd, .events = POLLIN},
            {.fd = sfd, .events = POLLIN},
        };
        if (poll(fds, 3, -1) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                if (!pump(&streams[i])) {
                    flush_partial(&streams[i]);
                    close(streams[i].fd);
                    streams[i].fd = -1; /* poll ignores negative fds */
                }
            }
        }
        if (fds[2].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si)
                ; /* drained; the reaping happens at the top of the loop */
        }
    }
    /* The init is gone: take what is still buffered in the pipes, without blocking on
     * writers that may live on (a process outside the PID namespace, say). */
    for (int i = 0; i < 2; i++) {
        if (streams[i].fd < 0)
            continue;
        fcntl(streams[i].fd, F_SETFL, O_NONBLOCK);
        while (pump(&streams[i]) && streams[i].len < sizeof streams[i].buf) {
            struct pollfd p = {.fd = streams[i].fd, .events = POLLIN};
            if (poll(&p, 1, 0) <= 0)
                break;
        }
        flush_partial(&streams[i]);
        close(streams[i].fd);
    }
    if (log_fd >= 0)
        close(log_fd);

    /* Hand over to the finisher with the wait status as its last argument. */
    char st[16];
    snprintf(st, sizeof st, "%d", status);
    char **args = calloc((size_t)argc, sizeof *args);
    int n = 0;
    for (int i = 5; i < argc; i++)
        args[n++] = argv[i];
    args[n++] = st;
    args[n] = NULL;
    sigprocmask(SIG_UNBLOCK, &mask, NULL);
    execv(args[0], args);
    perror("minibox-monitor: exec finisher");
    return 125;
}
