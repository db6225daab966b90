#!/bin/sh
# /init of the compat guest: mount what BPF needs, load the channel's modules, run the agent.
# Whatever happens, power off: QEMU runs with -no-reboot, so the VM ends with the agent.
export PATH=/usr/bin PYTHONHOME=/usr PYTHONPATH=/usr/lib/python3/dist-packages
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
if [ -f /compat-modules/order ]; then
    for m in $(cat /compat-modules/order); do
        insmod "/compat-modules/$m.ko" || echo "compat-init: insmod $m failed"
    done
fi
python3 -S -X utf8 -m compat_agent
echo "compat-init: agent exited with status $?"
poweroff -f
