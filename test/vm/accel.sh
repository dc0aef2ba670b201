#!/bin/bash
# Print the QEMU accelerator to use: "kvm" when /dev/kvm accelerates an
# ordinary guest kernel, else "tcg". Some hosts (this fleet's PVM-based VMs)
# have a /dev/kvm that runs only specially built guests: a stock kernel sits
# in its decompressor forever. So KVM is tried once with a 20 s budget to
# reach the kernel's first console line, and the verdict cached in VMDIR.
set -u
VMDIR=${1:-/var/tmp/berth-vm}
cache=$VMDIR/accel
[ -s "$cache" ] && { cat "$cache"; exit 0; }
verdict=tcg
if [ -w /dev/kvm ]; then
	log=$(mktemp)
	timeout 20 qemu-system-x86_64 -accel kvm -cpu host -m 512 -smp 1 -display none -monitor none \
		-serial file:"$log" -nic none -kernel "$VMDIR/vmlinuz" -append "console=ttyS0 panic=-1 earlyprintk=ttyS0" \
		-no-reboot >/dev/null 2>&1 &
	pid=$!
	for _ in $(seq 40); do
		if grep -q 'Linux version' "$log" 2>/dev/null; then verdict=kvm; break; fi
		kill -0 $pid 2>/dev/null || break
		sleep 0.5
	done
	kill $pid 2>/dev/null; wait $pid 2>/dev/null
	rm -f "$log"
fi
echo "$verdict" > "$cache"
echo "$verdict"
