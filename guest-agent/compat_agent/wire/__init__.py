"""The wire contract between the host and the guest agent: pure Python, standard library only.

Both sides import it (the host from the agent's package, the guest from its image), so every
message, fact and statistic is defined once:

- ``validate``: how a typed definition checks untrusted JSON (bounds, paths in errors);
- ``messages``: every message as a dataclass, with to_json() and a validating from_json();
- ``facts``: the fact table, one code per thing a kernel or libbpf said (with its parameters);
- ``textfacts``: the one place where the kernel's and libbpf's own text becomes facts;
- ``stats``: the table of verifier statistics;
- ``features``: kernel features with the upstream release that brought them.

Nothing here imports libbpf or ctypes.
"""
