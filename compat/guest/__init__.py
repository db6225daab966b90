"""Where guests run: the guest image, QEMU VMs, the fleet of one VM per kernel, snapshots."""
