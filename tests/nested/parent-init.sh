#!/bin/busybox sh
# /init of the simulated parent instance (tests/nested/nested.py): mount,
# load irqbypass -> kvm -> kvm-amd from the guest kernel's own package, run
# the listed scenarios, power off. Everything goes to the serial console,
# which the harness reads back.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# Loopback, for the scenarios' servers (qt-proxy's targets, httpd).
ifconfig lo 127.0.0.1 up
for module in irqbypass kvm kvm-amd; do
    insmod /lib/modules/$module.ko || echo "parent: insmod $module failed"
done
[ -c /dev/kvm ] || echo "parent: no /dev/kvm after loading kvm-amd"
# A sign of life every 20 s: in a parent that stops printing, it tells a
# stuck scenario (these lines go on) from a stuck parent (they stop too).
( while sleep 20; do echo "parent: alive at $(cut -d' ' -f1 /proc/uptime)s"; done ) &
export DATA=/data SCENARIOS=/scenarios
for scenario in $(cat /scenarios/list); do
    sh /scenarios/run-one.sh "$scenario"
done
echo "parent: done"
poweroff -f
