/*
 * minibox-init: the tiny PID 1 of `minibox run --init`.
 *
 * Why PID 1 is special (pid_namespaces(7)): orphaned processes in the namespace are
 * re-parented to it, so it must wait(2) for them or they stay as zombies; and the
 * kernel delivers a signal to it only if it has a handler for that signal, so a
 * command that never expected to be PID 1 ignores `minibox stop`'s SIGTERM. This
 * program runs the real command as its child, forwards the signals it receives to
 * it, reaps every process that ends, and exits with the command's status.
 *
 * usage: minibox-init CMD [ARG...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: minibox-init CMD [ARG...]\n");
        return 125;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);

    pid_t child = fork();
    if (child < 0) {
        perror("minibox-init: fork");
        return 125;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(argv[1], argv + 1);
        fprintf(stderr, "minibox-init: exec %s: %s\n", argv[1], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&all, &si);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            kill(child, sig); /* forward everything else to the command */
            continue;
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid == child) {
                if (WIFSIGNALED(status))
                    return 128 + WTERMSIG(status);
                return WEXITSTATUS(status);
            }
        }
    }
}
