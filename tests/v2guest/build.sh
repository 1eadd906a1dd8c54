#!/bin/bash
# Build (or refresh) the cgroup-v2 test guest: a Debian 6.1 kernel plus a tiny
# busybox initramfs whose /init (tests/v2guest/init) mounts the host root over
# 9p and runs one command under a pure cgroup v2 hierarchy.  See README.md.
#
# Usage: build.sh           ensure packages, newest kernel, initramfs (idempotent)
#        build.sh --check   exit 0 if a usable build exists and is up to date
#                           with init/build.sh; never touches apt or the network
#
# Everything lands in ${MINIBOX_V2_CACHE:-/var/cache/minibox-v2guest}:
#   debs/                      downloaded kernel packages
#   kernel/<kver>/             dpkg -x of the package (vmlinuz + modules)
#   initramfs-<kver>.cpio      the initramfs
#   current.env                KVER/VMLINUZ/INITRD/MODULES/STAMP read by run.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MINIBOX_V2_CACHE:-/var/cache/minibox-v2guest}

say() { echo "v2guest-build: $*" >&2; }
die() { say "error: $*"; exit 1; }

# The stamp ties the initramfs to the exact init and build recipe: editing
# either makes --check fail so run.sh rebuilds automatically.
stamp() { cat "$here/init" "$here/build.sh" | sha256sum | cut -d' ' -f1; }

check_current() {
	[ -r "$cache/current.env" ] || return 1
	# shellcheck source=/dev/null
	. "$cache/current.env"
	[ -r "${VMLINUZ:-}" ] && [ -r "${INITRD:-}" ] && [ "${STAMP:-}" = "$(stamp)" ]
}

if [ "${1:-}" = "--check" ]; then
	check_current
	exit
fi
[ $# -eq 0 ] || die "usage: build.sh [--check]"
[ "$(id -u)" = 0 ] || die "must run as root (apt-get, dpkg -x, mknod)"

mkdir -p "$cache/debs" "$cache/kernel"
# Let apt-get download fetch as _apt instead of warning about running unsandboxed.
chown _apt:root "$cache/debs" 2>/dev/null || true
# Serialise concurrent builds (two test runs starting at once).
exec 9>"$cache/.lock"
flock 9

# --- host packages -----------------------------------------------------------
need_pkgs=()
for p in qemu-system-x86 busybox-static; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
	say "installing ${need_pkgs[*]}"
	# Only refresh the package lists if installing from the current ones fails.
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >&2; then
		apt-get update >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >&2
	fi
fi
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing after install"
busybox=/bin/busybox
"$busybox" --list >/dev/null 2>&1 || die "$busybox (busybox-static) not usable"

# --- kernel package ------------------------------------------------------------
# Newest linux-image-6.1.0-NN-amd64 (or its -unsigned twin) that apt can
# actually fetch: names come and go with point releases, so never hardcode.
# Prints "PKG VERSION".
pick_kernel() {
	local names pkg ver
	names=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64(-unsigned)?$' 2>/dev/null |
		# sort key: ABI number descending, then the signed name before -unsigned
		awk '{ n=$1; sub(/^linux-image-6\.1\.0-/, "", n); sub(/-.*/, "", n);
		       print n, ($1 ~ /-unsigned$/), $1 }' |
		sort -k1,1nr -k2,2n | awk '{print $3}') || true
	for pkg in $names; do
		ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
		if [ -n "$ver" ] && [ "$ver" != "(none)" ]; then
			echo "$pkg $ver"
			return 0
		fi
	done
}

kpick=$(pick_kernel)
if [ -z "$kpick" ]; then
	say "no linux-image-6.1.0-*-amd64 in the apt lists; running apt-get update"
	apt-get update >&2 || true
	kpick=$(pick_kernel)
fi

fetch_deb() { # PKG VERSION -> path of the .deb in $cache/debs
	local pkg=$1 ver=$2 deb
	deb="$cache/debs/${pkg}_${ver//:/%3a}_amd64.deb"
	if [ ! -s "$deb" ]; then
		say "downloading $pkg $ver"
		# apt-get download writes into the cwd; its "unsandboxed as root"
		# warning is harmless.
		(cd "$cache/debs" && apt-get download "$pkg=$ver" >&2) || return 1
		[ -s "$deb" ] || return 1
	fi
	echo "$deb"
}

deb=
if [ -n "$kpick" ]; then
	read -r kpkg kver_pkg <<<"$kpick"
	if ! deb=$(fetch_deb "$kpkg" "$kver_pkg"); then
		# The mirror may have dropped that version: refresh lists, pick again.
		say "download failed; running apt-get update and retrying"
		apt-get update >&2 || true
		kpick=$(pick_kernel)
		deb=
		if [ -n "$kpick" ]; then
			read -r kpkg kver_pkg <<<"$kpick"
			deb=$(fetch_deb "$kpkg" "$kver_pkg") || deb=
		fi
	fi
fi

if [ -n "$deb" ]; then
	kver=${kpkg#linux-image-}
	kver=${kver%-unsigned}
	kdir="$cache/kernel/$kver"
	if [ ! -e "$kdir/.complete" ]; then
		say "unpacking $(basename "$deb")"
		rm -rf "$kdir" "$kdir.tmp"
		dpkg -x "$deb" "$kdir.tmp"
		[ -r "$kdir.tmp/boot/vmlinuz-$kver" ] || die "no boot/vmlinuz-$kver in $deb"
		[ -d "$kdir.tmp/lib/modules/$kver" ] || die "no lib/modules/$kver in $deb"
		# The package ships no modules.dep (postinst runs depmod).  Generate
		# it so that modprobe works inside the guest for tests that need
		# extra modules (veth, bridge, overlay ...).
		if command -v depmod >/dev/null; then
			depmod -b "$kdir.tmp" "$kver"
		else
			"$busybox" depmod -b "$kdir.tmp" "$kver"
		fi
		touch "$kdir.tmp/.complete"
		mv "$kdir.tmp" "$kdir"
	fi
elif [ -r "$cache/current.env" ]; then
	# Offline or mirror trouble: keep using the kernel we already have.
	# shellcheck source=/dev/null
	kver=$(. "$cache/current.env" && echo "$KVER")
	kdir="$cache/kernel/$kver"
	[ -e "$kdir/.complete" ] || die "cannot download a kernel and the cached one is gone"
	say "warning: could not fetch a kernel package; reusing cached $kver"
else
	die "cannot find or download a linux-image-6.1.0-*-amd64 package"
fi
moddir="$kdir/lib/modules/$kver"

# --- initramfs -----------------------------------------------------------------
initrd="$cache/initramfs-$kver.cpio"
want_stamp=$(stamp)
if [ -r "$cache/current.env" ] &&
	grep -qx "STAMP=$want_stamp" "$cache/current.env" &&
	grep -qx "KVER=$kver" "$cache/current.env" &&
	[ -r "$initrd" ] && [ -r "$kdir/boot/vmlinuz-$kver" ]; then
	say "up to date ($kver)"
	exit 0
fi

say "building initramfs for $kver"
stage=$(mktemp -d "$cache/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,proc,sys,host,lib/modules}
ln -s bin "$stage/sbin"
cp "$busybox" "$stage/bin/busybox"
# One symlink per applet.  `busybox --list` includes "busybox" itself on some
# builds; linking that name would replace the binary with a self-loop.
for applet in $("$stage/bin/busybox" --list); do
	[ "$applet" = busybox ] && continue
	ln -sf busybox "$stage/bin/$applet"
done
[ -f "$stage/bin/busybox" ] && [ ! -L "$stage/bin/busybox" ] || die "bin/busybox got clobbered"
# The kernel opens /dev/console for init before init can mount devtmpfs.
mknod -m 600 "$stage/dev/console" c 5 1
install -m 0755 "$here/init" "$stage/init"

# Module closure for virtio-pci + 9p, ordered dependencies first.  Read each
# .ko's own "depends=" field (modinfo section, NUL-separated strings), since
# the package ships no modules.dep and busybox modinfo insists on one.
declare -A ko_path=() seen=()
while IFS= read -r f; do
	name=$(basename "$f" .ko)
	ko_path[${name//-/_}]=${f#"$moddir/"}
done < <(find "$moddir/kernel" -name '*.ko')
order=()
add_module() {
	local m=${1//-/_} dep deps
	[ -n "${seen[$m]:-}" ] && return 0
	seen[$m]=1
	[ -n "${ko_path[$m]:-}" ] || die "module $m not found in $moddir (built in? check modules.builtin)"
	deps=$(tr '\0' '\n' <"$moddir/${ko_path[$m]}" | sed -n 's/^depends=//p' | head -n1)
	for dep in ${deps//,/ }; do
		add_module "$dep"
	done
	order+=("${ko_path[$m]}")
}
for root_mod in virtio_pci 9pnet_virtio 9p; do
	# Skip what this kernel has built in.
	grep -q "/${root_mod}\.ko\$" "$moddir/modules.builtin" 2>/dev/null && continue
	add_module "$root_mod"
done
for rel in "${order[@]}"; do
	mkdir -p "$stage/lib/modules/$(dirname "$rel")"
	cp "$moddir/$rel" "$stage/lib/modules/$rel"
done
printf '%s\n' "${order[@]}" >"$stage/modules.order.v2guest"
say "modules: $(printf '%s ' "${order[@]##*/}")"

# Uncompressed newc archive: ~3 MB, and TCG need not spend time inflating it.
(cd "$stage" && find . | sort | "$busybox" cpio -o -H newc >"$initrd.tmp" 2>/dev/null)
mv "$initrd.tmp" "$initrd"

cat >"$cache/current.env.tmp" <<EOF
KVER=$kver
VMLINUZ=$kdir/boot/vmlinuz-$kver
INITRD=$initrd
MODULES=$kdir/lib/modules
STAMP=$want_stamp
EOF
mv "$cache/current.env.tmp" "$cache/current.env"

# Drop superseded kernels (~400 MB unpacked each).  A guest still running
# from an old one keeps its open files; nothing else refers to them.
for old in "$cache"/kernel/* "$cache"/initramfs-*.cpio; do
	case "$old" in
	"$kdir" | "$initrd") ;;
	*) [ -e "$old" ] && rm -rf "$old" ;;
	esac
done
for old in "$cache"/debs/*.deb; do
	[ -e "$old" ] && [ "$old" != "${deb:-}" ] && rm -f "$old"
done
say "done: kernel $kver, initramfs $initrd ($(du -h "$initrd" | cut -f1))"
