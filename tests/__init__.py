"""Tests for imageremoval, run against a real containerd."""
