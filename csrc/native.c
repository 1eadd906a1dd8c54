/*
 * minibox's only C: the system calls Python 3.11 does not offer.
 *
 * Each function does one call and returns what the kernel returned; errno is
 * kept by cffi and turned into OSError by minibox/kernel/. Nothing here
 * narrates or decides: that is the Python wrappers' job, so --explain can
 * never disagree with what was done.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/mount.h>
#include <linux/bpf.h>
#include <stdint.h>

/*
 * clone(2) used the way fork(2) is: no new stack (the child runs on a
 * copy-on-write copy of ours) and SIGCHLD as the exit signal, so the child
 * returns here with 0 and carries on in Python, like os.fork(). cffi released
 * the GIL before this call and no other thread exists in minibox at this
 * point, so the child's copy of the interpreter holds no lock that nobody
 * will release. The namespace flags make the child the first process of its
 * new namespaces (PID 1 with CLONE_NEWPID).  See clone(2), "C library/kernel
 * differences": the raw syscall's argument order on x86-64 is
 * (flags, stack, parent_tid, child_tid, tls).
 */
long mb_clone(unsigned long flags)
{
    return syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
}

int mb_unshare(int flags) { return unshare(flags); }

int mb_setns(int fd, int nstype) { return setns(fd, nstype); }

/* pivot_root(2) has no glibc wrapper. */
int mb_pivot_root(const char *new_root, const char *put_old)
{
    return syscall(SYS_pivot_root, new_root, put_old);
}

int mb_mount(const char *source, const char *target, const char *fstype,
             unsigned long flags, const char *data)
{
    return mount(source, target, fstype, flags, data);
}

int mb_umount2(const char *target, int flags) { return umount2(target, flags); }

int mb_sethostname(const char *name, size_t len) { return sethostname(name, len); }

/*
 * Bring an interface up with SIOCGIFFLAGS/SIOCSIFFLAGS (netdevice(7)): enough
 * for `lo` in a new network namespace without loading a netlink library.
 */
int mb_link_up(const char *ifname)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        goto fail;
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        goto fail;
    close(fd);
    return 0;
fail:
    {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return -1;
}

/*
 * The new mount API (open_tree(2), mount_setattr(2), move_mount(2)) makes an
 * idmapped copy of a directory tree: files owned by host uid 0 appear owned
 * by the container's root without touching the files on disk.
 */
int mb_open_tree(int dfd, const char *path, unsigned int flags)
{
    return syscall(SYS_open_tree, dfd, path, flags);
}

int mb_mount_setattr_idmap(int mfd, int userns_fd, int recursive)
{
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_IDMAP;
    attr.userns_fd = userns_fd;
    return syscall(SYS_mount_setattr, mfd, "",
                   AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0),
                   &attr, sizeof attr);
}

int mb_move_mount(int from_fd, const char *to_path)
{
    return syscall(SYS_move_mount, from_fd, "", AT_FDCWD, to_path,
                   MOVE_MOUNT_F_EMPTY_PATH);
}

/*
 * cgroup v2 has no devices.allow file: a BPF_PROG_TYPE_CGROUP_DEVICE program attached
 * to the group decides each access (Documentation/admin-guide/cgroup-v2.rst, "Device
 * controller"; runc and crun do the same). The instructions are generated in Python
 * (minibox/cgroups/v2/devices.py); here they are only loaded and attached (bpf(2)).
 */
int mb_bpf_load_devices(const void *insns, unsigned int count, char *log, unsigned int logsize)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = count;
    attr.license = (uint64_t)(uintptr_t)"Apache";
    attr.log_buf = (uint64_t)(uintptr_t)log;
    attr.log_size = logsize;
    attr.log_level = log ? 1 : 0;
    return syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
}

int mb_bpf_attach_devices(int prog_fd, int cgroup_fd)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = cgroup_fd;
    attr.attach_bpf_fd = prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    return syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof attr);
}
