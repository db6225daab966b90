"""Pure ELF reading, shared with the host: the file reader, the object analysis, section rules."""
