#!/bin/bash
# Boot the test guest (make-image.sh), run CMD in it as root under bash, and
# power off. The directory run.sh is called from (the checkout) is shared
# into the guest with virtio-9p at /mnt/host and CMD runs there. CMD's
# output is streamed; the exit status is CMD's (125 if the guest never
# reported one, e.g. a panic or VM_TIMEOUT).
#
#   test/vm/run.sh 'stat -fc %T /sys/fs/cgroup'
#   VM_MEM=4096 test/vm/run.sh test/vm/guest-suite.sh
#
# The guest has no network device at all (-nic none): only its own loopback
# and the namespaces tests make. Every run starts from the pristine image
# (-snapshot): nothing written to the guest disk survives.
#
# Env: VMDIR (/var/tmp/berth-vm), VM_CPUS (2), VM_MEM (MiB, 4096),
#      VM_TIMEOUT (s, 3600), VM_ACCEL (auto: kvm when /dev/kvm really
#      accelerates a guest, else tcg), VM_APPEND (more kernel arguments).
# The guest console of the last run is kept in $VMDIR/last-console.log.
set -u
here=$(cd "$(dirname "$0")" && pwd)
VMDIR=${VMDIR:-/var/tmp/berth-vm}
[ $# -gt 0 ] || { echo "usage: $0 CMD [ARGS...]" >&2; exit 2; }
[ -s "$VMDIR/disk.img" ] || { echo "run.sh: no guest image in $VMDIR; run test/vm/make-image.sh" >&2; exit 2; }
CTL=$(mktemp -d /var/tmp/berth-vmctl.XXXXXX)
qemu=
cleanup() { [ -n "$qemu" ] && kill "$qemu" 2>/dev/null; rm -rf "$CTL"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ $# -eq 1 ]; then printf '%s\n' "$1"; else printf '%q ' "$@"; echo; fi > "$CTL/cmd.sh"
: > "$CTL/out.txt"

accel=${VM_ACCEL:-auto}
if [ "$accel" = auto ]; then
	accel=$("$here/accel.sh" "$VMDIR")
fi
cpu=max; [ "$accel" = kvm ] && cpu=host
start=$(date +%s.%N)
timeout "${VM_TIMEOUT:-3600}" qemu-system-x86_64 \
	-accel "$accel" -cpu $cpu -smp "${VM_CPUS:-2}" -m "${VM_MEM:-4096}" \
	-display none -monitor none -serial file:"$CTL/console.log" -nic none \
	-kernel "$VMDIR/vmlinuz" -initrd "$VMDIR/initrd.img" \
	-append "console=ttyS0 root=/dev/vda rw quiet systemd.unified_cgroup_hierarchy=1 tsc=reliable ${VM_APPEND:-}" \
	-drive file="$VMDIR/disk.img",format=raw,if=virtio -snapshot \
	-virtfs local,path="$CTL",mount_tag=ctl,security_model=none,id=ctl \
	-virtfs local,path="$PWD",mount_tag=host0,security_model=none,id=host0 &
qemu=$!
tail -n +1 -f --pid=$qemu "$CTL/out.txt" &   # live output
wait $qemu; qrc=$?
qemu=
wait
cp "$CTL/console.log" "$VMDIR/last-console.log" 2>/dev/null
[ -n "$(tail -c1 "$CTL/out.txt")" ] && echo     # output lacked a final newline
secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
boot=$(tr '\n' ' ' < "$CTL/vm-boot.txt" 2>/dev/null)
echo "vm: $accel, qemu exit $qrc, ${secs}s wall; guest: ${boot:-no report}" >&2
if [ ! -s "$CTL/rc.txt" ]; then
	echo "vm: no exit status from the guest; console tail:" >&2
	tail -n 30 "$CTL/console.log" >&2
	exit 125
fi
exit "$(cat "$CTL/rc.txt")"
