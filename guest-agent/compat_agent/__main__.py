"""Entry point in the guest: python3 -m compat_agent."""

from .agent import main

main()
