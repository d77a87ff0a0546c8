variable "subscription_id" {
  description = "Azure subscription to deploy into"
  type        = string
}

variable "location" {
  description = "Azure region"
  type        = string
  default     = "westeurope"
}

variable "resource_group" {
  description = "Resource group for cloudkeep's resources"
  type        = string
  default     = "cloudkeep"
}

variable "vault_account" {
  description = "Storage account name of the vault (3-20 lowercase letters and digits)"
  type        = string
}

variable "function_app" {
  description = "Function App name (globally unique)"
  type        = string
}

variable "cosmos_account" {
  description = "Cosmos DB account whose containers are backed up"
  type        = string
}

variable "cosmos_resource_group" {
  description = "Resource group of the Cosmos DB account"
  type        = string
}

variable "immutability_days" {
  description = "Time-based immutability of the vault container"
  type        = number
  default     = 7
}

variable "tick_schedule" {
  description = "NCRONTAB schedule of the tick (six fields, with seconds)"
  type        = string
  default     = "0 */15 * * * *"
}

variable "alert_email" {
  description = "Where failure alerts go"
  type        = string
}

variable "key_vault" {
  description = "name of the Key Vault holding cloudkeep's envelope key (globally unique)"
  type        = string
  default     = "cloudkeep-keys"
}

variable "envelope_key_expires" {
  description = "expiry of the envelope key (RFC 3339); rotation makes a new version before it"
  type        = string
  default     = "2028-12-31T00:00:00Z"
}
