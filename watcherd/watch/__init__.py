"""Watching jobs: the poller and its schedule, the hook dispatcher, and `wait`.

This layer composes the three below it (`api`, `store`, `hooks`), which never import
each other.
"""
