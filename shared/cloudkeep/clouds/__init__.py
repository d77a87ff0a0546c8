"""Per-cloud SDK plumbing shared by one cloud's adapters (error translation, client building)."""
