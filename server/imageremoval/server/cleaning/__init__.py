"""The node-cleaning use cases: inventory, prune plans and their execution, usage and disk reclaim."""
