"""What a kernel offers: program and map types, helpers, kfuncs and features."""
