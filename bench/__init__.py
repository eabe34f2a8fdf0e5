"""Benchmarks of imageremoval side by side with containerd itself (`make bench`, `python -m bench`)."""
