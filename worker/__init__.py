"""customer-worker: the service that owns the customer profile."""
