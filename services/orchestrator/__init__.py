"""The orchestrator: the only writer of desired state (tenants, keys, events, inputs, outputs) and its REST API."""
