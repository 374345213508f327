"""The pure domain: how events become changes, and how stored state becomes a record.

Nothing here does I/O, so every rule can be read and tested without Kafka or Redis.
"""
