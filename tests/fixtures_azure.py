"""Azure emulator fixtures (Azurite, Cosmos DB server)."""
