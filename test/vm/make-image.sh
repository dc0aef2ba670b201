#!/bin/sh
# Build the real-node test guest: Debian 12 (bookworm) from Debian packages
# only, its stock 6.1 kernel, systemd as PID 1 on a pure cgroup v2 hierarchy,
# dbus, iproute2, iptables, the CNI plugins, libseccomp2, runc, apparmor
# and sudo (critest loads its AppArmor test profiles with them), and CRIU's
# libraries. No network
# in the guest. Output in $VMDIR: disk.img (ext4, raw, sparse), vmlinuz,
# initrd.img, and image.key.
#
# The image is cached: it is rebuilt only when this script (the key) changes
# or VM_REBUILD=1. About 2 minutes on a fresh machine, most of it debootstrap.
#
#   test/vm/make-image.sh          # VMDIR defaults to /var/tmp/berth-vm
set -eu
here=$(cd "$(dirname "$0")" && pwd)
VMDIR=${VMDIR:-/var/tmp/berth-vm}
SIZE=${VM_DISK_SIZE:-12G}
key=$(sha256sum "$here/make-image.sh" | cut -c1-16)
if [ "${VM_REBUILD:-0}" != 1 ] && [ -s "$VMDIR/disk.img" ] && [ "$(cat "$VMDIR/image.key" 2>/dev/null)" = "$key" ]; then
	echo "make-image: cached image in $VMDIR (key $key)"
	exit 0
fi

# The mirror the host's apt uses (deb822 "URIs:" or one-line "deb URL").
MIRROR=${MIRROR:-$(grep -hs -E '^URIs:|^deb ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
	| grep -m1 -E '/debian/?$| bookworm' | awk '{print $2}')} || true
[ -n "${MIRROR:-}" ] || { echo "make-image: no Debian mirror in the host's apt sources; set MIRROR" >&2; exit 1; }
# The kernel comes second (below), once the initramfs is set up small: the
# initramfs is then made once, not twice.
PKGS=systemd,systemd-sysv,dbus,udev,kmod,iproute2,iptables,libseccomp2,procps,util-linux,e2fsprogs,apparmor,sudo
PKGS=$PKGS,containernetworking-plugins,runc,busybox-static,psmisc,initramfs-tools,zstd
# The libraries of the host's CRIU 4.1 (hack/install-criu.sh), which the
# suite copies in: Debian 12's own criu is 3.17.
PKGS=$PKGS,libbsd0,libgnutls30,libnftables1,libprotobuf-c1,libnl-3-200,libnet1,libuuid1

command -v qemu-system-x86_64 >/dev/null && command -v debootstrap >/dev/null && command -v mkfs.ext4 >/dev/null ||
	{ apt-get update -q; DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends qemu-system-x86 qemu-utils debootstrap e2fsprogs; }

mkdir -p "$VMDIR"; cd "$VMDIR"
rm -f image.key
R=$VMDIR/rootfs
rm -rf "$R"
debootstrap --variant=minbase --include="$PKGS" bookworm "$R" "$MIRROR" >"$VMDIR/debootstrap.log" 2>&1 ||
	{ tail -20 "$VMDIR/debootstrap.log" >&2; exit 1; }

# --- guest configuration ---------------------------------------------------
echo guest > "$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 guest\n' > "$R/etc/hosts"
# Two virtio-9p shares from the host: "ctl" (command, output, exit status)
# and "host0" (the directory the command runs in: the checkout).
cat > "$R/etc/fstab" <<'END'
/dev/vda / ext4 rw,errors=remount-ro 0 1
ctl   /mnt/ctl  9p trans=virtio,version=9p2000.L,msize=512000,nofail 0 0
host0 /mnt/host 9p trans=virtio,version=9p2000.L,msize=512000,nofail 0 0
END
mkdir -p "$R/mnt/ctl" "$R/mnt/host"
printf '9p\n9pnet_virtio\noverlay\nveth\nbridge\nbr_netfilter\n' > "$R/etc/modules-load.d/guest.conf"
chroot "$R" passwd -d root >/dev/null       # no network: an empty root password is fine
mkdir -p "$R/etc/systemd/system/serial-getty@ttyS0.service.d"
cat > "$R/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'END'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM
END
# Nothing periodic that would steal CPU during tests.
chroot "$R" systemctl disable -q apt-daily.timer apt-daily-upgrade.timer \
	dpkg-db-backup.timer e2scrub_all.timer fstrim.timer e2scrub_reap.service 2>/dev/null || true
chroot "$R" systemctl mask -q systemd-timesyncd.service 2>/dev/null || true

# vmrun: once the boot is finished, run /mnt/ctl/cmd.sh in /mnt/host, put
# its output and exit status in /mnt/ctl, then power off.
cat > "$R/usr/local/sbin/vmrun" <<'END'
#!/bin/sh
C=/mnt/ctl
[ -f $C/cmd.sh ] || exit 0
systemctl is-system-running --wait >/dev/null   # running or degraded
{ echo "uptime_at_cmd_start_s $(cut -d' ' -f1 /proc/uptime)"
  systemd-analyze time | head -1; } > $C/vm-boot.txt
cd /mnt/host 2>/dev/null || cd /root
HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin bash $C/cmd.sh > $C/out.txt 2>&1 < /dev/null
echo $? > $C/rc.txt
sync
systemctl poweroff --force   # skip the orderly unit stop (seconds under TCG)
END
chmod +x "$R/usr/local/sbin/vmrun"
cat > "$R/etc/systemd/system/vmrun.service" <<'END'
[Unit]
Description=Run /mnt/ctl/cmd.sh and power off
After=multi-user.target
RequiresMountsFor=/mnt/ctl
[Service]
# exec, not oneshot: the boot transaction completes, so the guest reports
# "running" (not "starting") while the command runs.
Type=exec
ExecStart=/usr/local/sbin/vmrun
[Install]
WantedBy=multi-user.target
END
chroot "$R" systemctl enable -q vmrun.service

# Small initrd: only what mounts /dev/vda (a faster boot under TCG); then
# the kernel, from the same mirror, through the guest's own apt.
sed -i 's/^MODULES=.*/MODULES=list/' "$R/etc/initramfs-tools/initramfs.conf"
printf 'virtio_pci\nvirtio_blk\next4\n' > "$R/etc/initramfs-tools/modules"
chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get -q -o APT::Sandbox::User=root install -y --no-install-recommends \
	linux-image-amd64 >>"$VMDIR/debootstrap.log" 2>&1 || { tail -20 "$VMDIR/debootstrap.log" >&2; exit 1; }
rm -f "$R"/var/cache/apt/archives/*.deb

cp -L "$R"/boot/vmlinuz-* vmlinuz; cp -L "$R"/boot/initrd.img-* initrd.img
rm -f disk.img
mkfs.ext4 -q -F -L root -d "$R" disk.img "$SIZE"
rm -rf "$R"
echo "$key" > image.key
echo "make-image: image ready in $VMDIR: disk.img ($(du -h disk.img | cut -f1) used of $SIZE), kernel $(file -b vmlinuz 2>/dev/null | grep -o 'version [^ ]*' || true)"
