"""Offline evaluation of Vigil's scorer on public anomaly benchmarks."""
