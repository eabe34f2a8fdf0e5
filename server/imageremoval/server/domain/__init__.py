"""Docker's rules and the node owner's policy as pure code: value types, errors, references, conflicts."""
