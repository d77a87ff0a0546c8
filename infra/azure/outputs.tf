output "function_apps" {
  value = { for k, v in azurerm_linux_function_app.role : k => v.name }
}

output "vault_container" {
  value = "${azurerm_storage_account.vault.primary_blob_endpoint}${azurerm_storage_container.vault.name}"
}

output "identity_client_ids" {
  value = { for k, v in azurerm_user_assigned_identity.role : k => v.client_id }
}

output "config_container" {
  value = "${azurerm_storage_account.vault.primary_blob_endpoint}${azurerm_storage_container.config.name}"
}

output "envelope_key_url" {
  value = azurerm_key_vault_key.envelope.versionless_id
}
