"""Benchmark harness: timing, recall against exact answers, peers, reports and plots."""
