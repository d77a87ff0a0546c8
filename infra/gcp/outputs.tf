output "vault_bucket" {
  value = google_storage_bucket.vault.name
}

output "invoke_url" {
  value = google_cloudfunctions2_function.invoke.service_config[0].uri
}

output "service_account" {
  value = google_service_account.cloudkeep.email
}

output "alerts_topic" {
  value = google_pubsub_topic.alerts.id
}

output "envelope_key" {
  value = google_kms_crypto_key.envelope.id
}
