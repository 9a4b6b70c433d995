"""The record: evidence schema, hash-chained journals, seal and integrity checks.

The ground floor: imports nothing else of onegc.
"""
