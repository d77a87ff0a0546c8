output "function_app" {
  value = azurerm_linux_function_app.cloudkeep.name
}

output "vault_container" {
  value = "${azurerm_storage_account.vault.primary_blob_endpoint}${azurerm_storage_container.vault.name}"
}

output "identity_client_id" {
  value = azurerm_user_assigned_identity.cloudkeep.client_id
}

output "envelope_key_url" {
  value = azurerm_key_vault_key.envelope.versionless_id
}
