"""Where kernels come from: the matrix, Debian's archive (apt), the cache, modules and versions."""
