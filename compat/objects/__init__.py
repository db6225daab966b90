"""The user's BPF object files: reading them, embedded objects, source lines, global variables."""
