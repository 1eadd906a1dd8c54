"""Thin wrappers over minibox._native and a few os calls: each one kernel step, each narrated."""
