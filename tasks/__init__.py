"""SeqIO task and mixture registrations (import this package to register them)."""
