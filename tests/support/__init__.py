"""Test support: a private containerd, an image factory over containerd's own API, and runc containers."""
