"""Plugins that run sparseidx inside other systems (a Feast online store)."""
