"""gRPC transport: servicers, proto converters, status mapping, interceptors, TLS and listeners."""
