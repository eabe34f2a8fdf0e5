"""The imageremoval server: removes containerd images with Docker's semantics over gRPC."""
