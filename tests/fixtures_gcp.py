"""Google Cloud emulator fixtures (Firestore emulator, fake-gcs-server)."""
