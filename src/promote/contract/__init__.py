"""Kernel contracts: loading YAML contract files and reporting problems a person can act on."""
