"""compat guest agent: runs inside each VM, speaks the framed JSON protocol with the host."""

AGENT_VERSION = "0.1.0"
