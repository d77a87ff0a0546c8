output "vault_bucket" {
  value = google_storage_bucket.vault.name
}

output "invoke_url" {
  value = google_cloudfunctions2_function.invoke.service_config[0].uri
}

output "service_accounts" {
  value = {
    backup  = google_service_account.backup.email
    pruner  = google_service_account.pruner.email
    restore = google_service_account.restore.email
  }
}

output "config_bucket" {
  value = google_storage_bucket.config.name
}

output "alerts_topic" {
  value = google_pubsub_topic.alerts.id
}

output "envelope_key" {
  value = google_kms_crypto_key.envelope.id
}
