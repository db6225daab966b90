"""The guest kernel's BPF interface: libbpf bindings, log buffers, kernel BTF, time limits, modules."""
