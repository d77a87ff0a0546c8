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

variable "lock_immutability" {
  description = <<-EOT
    Lock the vault container's immutability policy. Irreversible: once locked, the period can
    only be extended, never shortened or removed (not by the subscription owner), no blob can
    be changed or deleted before it is that old, and the container and account cannot be
    deleted while they hold such blobs. Set it once immutability_days is final.
  EOT
  type        = bool
  default     = false
}

variable "invoke_union" {
  description = "Give the restore app's identity (invoke) the backup and prune roles too"
  type        = bool
  default     = false
}

variable "prune_schedule" {
  description = "NCRONTAB schedule of the pruner"
  type        = string
  default     = "0 30 * * * *"
}

variable "verify_schedule" {
  description = "NCRONTAB schedule of the verifier (the tiers' verify schedules decide what is due)"
  type        = string
  default     = "0 */15 * * * *"
}

variable "private_network" {
  description = "No public network access to the vault account and the Key Vault: private endpoints in private_endpoint_subnet_id, the backup and prune apps VNet-integrated (needs plan_sku EP1 or another plan with VNet integration)"
  type        = bool
  default     = false
}

variable "private_endpoint_subnet_id" {
  description = "Subnet of the private endpoints (private_network)"
  type        = string
  default     = null
}

variable "function_subnet_id" {
  description = "Subnet the apps are integrated into (private_network)"
  type        = string
  default     = null
}

variable "plan_sku" {
  description = "App Service plan: Y1 (consumption) or, for private_network, EP1"
  type        = string
  default     = "Y1"
}

variable "cosmos_restore_database" {
  description = "Cosmos DB database restores may write into (empty: restores into Cosmos are not granted)"
  type        = string
  default     = ""
}

variable "capture_cosmos_database" {
  description = "Continuous capture (issue #21): the Cosmos DB database of the container whose change feed the backup app's Cosmos DB trigger captures (empty: no capture)"
  type        = string
  default     = ""
}

variable "capture_cosmos_container" {
  description = "The container whose changes are captured (with capture_cosmos_database)"
  type        = string
  default     = ""
}

variable "capture_lease_container" {
  description = "The trigger's lease container (created in capture_cosmos_database; partition key /id)"
  type        = string
  default     = "cloudkeep-leases"
}
