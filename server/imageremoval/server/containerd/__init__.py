"""The adapter over containerd's gRPC API, its event publisher, and the private daemon for runs and tests."""
