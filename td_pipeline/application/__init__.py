"""Ports (Protocols) and use-case steps; imports the domain only."""
