"""A check run: objects x kernels scheduled on the fleet, shards, and the cache of results."""
