"""Attach checks of loaded programs, by attach kind (kprobes, perf events, XDP/tc, ...)."""
