"""Fanout's common library: bus messages, subjects, protocol cores, config and service plumbing."""
