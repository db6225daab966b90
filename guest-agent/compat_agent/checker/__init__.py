"""The check of one object: load every program until each has a verdict (libbpf or legacy maps)."""
