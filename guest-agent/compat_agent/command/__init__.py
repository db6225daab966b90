"""compat run in the guest: the team's own loader, run as root in a fresh working directory, with
the BPF programs and maps it loaded walked by id while it runs (see run.py and bpfids.py)."""
