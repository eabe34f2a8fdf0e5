"""The removal use cases: resolve, walk, check, untag or delete, and tell the truth about what happened."""
