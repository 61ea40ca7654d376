"""PaymentWorkflow: the saga, deterministic, no I/O."""
