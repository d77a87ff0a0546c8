# cloudkeep on Azure: three Linux Function Apps (Python, v2 programming model), one per duty and
# identity (an app's functions share its identities; docs/threat-model.md):
#   backup   tick (timer, CLOUDKEEP_TICK) and work (queue): read the sources, read the vault and
#            write new blobs — never delete
#   prune    prune (timer): the only identity that may delete, within the immutability policy
#   restore  verify (timer) and invoke (HTTP): restores, drills, scheduled verifications
# A vault storage account with versioning and a time-based immutability policy on the vault
# container (lockable: lock_immutability), the policy in a config container the apps only read,
# private endpoints for storage and Key Vault where private_network says so, Application
# Insights and alerts on failures.

terraform {
  required_version = ">= 1.5"
  required_providers {
    azurerm = { source = "hashicorp/azurerm", version = "~> 4.0" }
  }
}

provider "azurerm" {
  features {}
  subscription_id = var.subscription_id
}

resource "azurerm_resource_group" "cloudkeep" {
  name     = var.resource_group
  location = var.location
}

resource "azurerm_user_assigned_identity" "role" {
  for_each            = toset(["backup", "prune", "restore"])
  name                = "cloudkeep-${each.key}"
  location            = azurerm_resource_group.cloudkeep.location
  resource_group_name = azurerm_resource_group.cloudkeep.name
}

locals {
  principal = { for k, v in azurerm_user_assigned_identity.role : k => v.principal_id }
  # invoke_union: the restore app's identity also gets the backup and prune roles
  backup_principals  = var.invoke_union ? [local.principal.backup, local.principal.restore] : [local.principal.backup]
  prune_principals   = var.invoke_union ? [local.principal.prune, local.principal.restore] : [local.principal.prune]
  restore_principals = [local.principal.restore]
  blob               = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
}

# Custom roles are defined for the resource group (Azure allows no narrower assignable scope) and
# assigned on the vault container or the envelope key alone.
# Azure RBAC cannot say "create only" (no condition on If-None-Match): the backup role may read
# and write blobs but never delete one, and the container's immutability policy (below) refuses
# any change to an existing blob for its period — so an overwrite can destroy nothing.
resource "azurerm_role_definition" "backup" {
  name        = "cloudkeep-backup-${var.vault_account}"
  scope       = azurerm_resource_group.cloudkeep.id
  description = "cloudkeep backups: read and write blobs in the vault container; no delete"
  permissions {
    actions      = ["Microsoft.Storage/storageAccounts/blobServices/containers/read"]
    data_actions = ["${local.blob}/read", "${local.blob}/write", "${local.blob}/add/action"]
  }
  assignable_scopes = [azurerm_resource_group.cloudkeep.id] # assigned on the vault container only
}

resource "azurerm_role_definition" "prune" {
  name        = "cloudkeep-prune-${var.vault_account}"
  scope       = azurerm_resource_group.cloudkeep.id
  description = "cloudkeep pruner: the only role that deletes blobs and versions (immutability still applies)"
  # blobs/write also lets it set parts' access tiers (cold tiers: Set Blob Tier, no rewrite)
  permissions {
    actions = ["Microsoft.Storage/storageAccounts/blobServices/containers/read"]
    data_actions = ["${local.blob}/read", "${local.blob}/write", "${local.blob}/add/action",
    "${local.blob}/delete", "${local.blob}/deleteBlobVersion/action"]
  }
  assignable_scopes = [azurerm_resource_group.cloudkeep.id] # assigned on the vault container only
}

resource "azurerm_role_definition" "restore" {
  name        = "cloudkeep-restore-${var.vault_account}"
  scope       = azurerm_resource_group.cloudkeep.id
  description = "cloudkeep restores and verifications: read blobs, write verification and audit records"
  # blobs/write also lets it rehydrate archived parts (Set Blob Tier back to Cold)
  permissions {
    actions      = ["Microsoft.Storage/storageAccounts/blobServices/containers/read"]
    data_actions = ["${local.blob}/read", "${local.blob}/write", "${local.blob}/add/action"]
  }
  assignable_scopes = [azurerm_resource_group.cloudkeep.id] # assigned on the vault container only
}

resource "azurerm_role_assignment" "vault_backup" {
  for_each           = toset(local.backup_principals)
  scope              = azurerm_storage_container.vault.resource_manager_id
  role_definition_id = azurerm_role_definition.backup.role_definition_resource_id
  principal_id       = each.value
}

resource "azurerm_role_assignment" "vault_prune" {
  for_each           = toset(local.prune_principals)
  scope              = azurerm_storage_container.vault.resource_manager_id
  role_definition_id = azurerm_role_definition.prune.role_definition_resource_id
  principal_id       = each.value
}

resource "azurerm_role_assignment" "vault_restore" {
  for_each           = toset(local.restore_principals)
  scope              = azurerm_storage_container.vault.resource_manager_id
  role_definition_id = azurerm_role_definition.restore.role_definition_resource_id
  principal_id       = each.value
}

# The policy cloudkeep.yaml lives in its own container, written by the deployment (CI / IaC);
# every app only reads it.
resource "azurerm_role_assignment" "config_read" {
  for_each             = local.principal
  scope                = azurerm_storage_container.config.resource_manager_id
  role_definition_name = "Storage Blob Data Reader"
  principal_id         = each.value
}

resource "azurerm_storage_account" "vault" {
  #checkov:skip=CKV_AZURE_33:queue logging does not apply: the account serves blobs only
  #checkov:skip=CKV2_AZURE_1:customer-managed keys are optional; data at rest uses Microsoft-managed keys
  #checkov:skip=CKV_AZURE_59:public network access is off with private_network = true (private endpoints); a consumption plan needs the public endpoint
  #checkov:skip=CKV_AZURE_206:LRS by default to keep costs predictable; set account_replication_type = "GRS" for a second region
  #checkov:skip=CKV2_AZURE_33:private endpoints are created with private_network = true (they need the customer's subnet)
  #checkov:skip=CKV_AZURE_35:default action is Deny with private_network = true; Allow would otherwise lock out the consumption-plan apps
  name                            = var.vault_account
  resource_group_name             = azurerm_resource_group.cloudkeep.name
  location                        = azurerm_resource_group.cloudkeep.location
  account_tier                    = "Standard"
  account_replication_type        = "LRS"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  public_network_access_enabled   = !var.private_network
  local_user_enabled              = false

  network_rules {
    default_action = var.private_network ? "Deny" : "Allow"
    bypass         = ["AzureServices"]
  }

  blob_properties {
    versioning_enabled = true
    delete_retention_policy { days = 30 }
    container_delete_retention_policy { days = 30 }
  }

  sas_policy {
    expiration_period = "01.00:00:00"
  }
}

resource "azurerm_storage_container" "vault" {
  #checkov:skip=CKV2_AZURE_21:blob read logging is configured through the account's diagnostic settings below
  name                  = "cloudkeep"
  storage_account_id    = azurerm_storage_account.vault.id
  container_access_type = "private"
}

resource "azurerm_storage_container" "config" {
  #checkov:skip=CKV2_AZURE_21:as the vault container
  name                  = "cloudkeep-config"
  storage_account_id    = azurerm_storage_account.vault.id
  container_access_type = "private"
}

# WORM: blobs in the vault container cannot be changed or deleted for this many days — by any
# identity, the pruner included. lock_immutability locks the policy: irreversible, see
# variables.tf.
resource "azurerm_storage_container_immutability_policy" "vault" {
  storage_container_resource_manager_id = azurerm_storage_container.vault.resource_manager_id
  immutability_period_in_days           = var.immutability_days
  protected_append_writes_all_enabled   = false
  locked                                = var.lock_immutability
}

# private_network: the vault and the Key Vault are reached through private endpoints only.
resource "azurerm_private_endpoint" "vault_blob" {
  count               = var.private_network ? 1 : 0
  name                = "cloudkeep-vault-blob"
  location            = azurerm_resource_group.cloudkeep.location
  resource_group_name = azurerm_resource_group.cloudkeep.name
  subnet_id           = var.private_endpoint_subnet_id
  private_service_connection {
    name                           = "cloudkeep-vault-blob"
    private_connection_resource_id = azurerm_storage_account.vault.id
    subresource_names              = ["blob"]
    is_manual_connection           = false
  }
}

resource "azurerm_private_endpoint" "key_vault" {
  count               = var.private_network ? 1 : 0
  name                = "cloudkeep-key-vault"
  location            = azurerm_resource_group.cloudkeep.location
  resource_group_name = azurerm_resource_group.cloudkeep.name
  subnet_id           = var.private_endpoint_subnet_id
  private_service_connection {
    name                           = "cloudkeep-key-vault"
    private_connection_resource_id = azurerm_key_vault.cloudkeep.id
    subresource_names              = ["vault"]
    is_manual_connection           = false
  }
}

# cloudkeep's client-side envelope encryption: the policy's azure_key_vault key wraps each
# snapshot's data key. The restore and prune identities may only unwrap (read, unwrapKey); the
# backup identity wraps and unwraps ("Key Vault Crypto User"): Key Vault's wrapKey carries no
# context, so the run state's purpose-bound wrap cannot be told apart here (docs/threat-model.md).
data "azurerm_client_config" "current" {}

resource "azurerm_key_vault" "cloudkeep" {
  #checkov:skip=CKV2_AZURE_32:a private endpoint is created with private_network = true (it needs the customer's subnet)
  #checkov:skip=CKV_AZURE_189:public network access is off with private_network = true; access is by RBAC on one key
  #checkov:skip=CKV_AZURE_109:default action is Deny with private_network = true
  name                          = var.key_vault
  location                      = azurerm_resource_group.cloudkeep.location
  resource_group_name           = azurerm_resource_group.cloudkeep.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "premium"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = !var.private_network

  network_acls {
    default_action = var.private_network ? "Deny" : "Allow"
    bypass         = "AzureServices"
  }
}

resource "azurerm_key_vault_key" "envelope" {
  name            = "envelope"
  key_vault_id    = azurerm_key_vault.cloudkeep.id
  key_type        = "RSA-HSM"
  key_size        = 3072
  key_opts        = ["wrapKey", "unwrapKey"]
  expiration_date = var.envelope_key_expires

  rotation_policy {
    automatic {
      time_before_expiry = "P30D"
    }
    expire_after         = "P2Y"
    notify_before_expiry = "P29D"
  }
}

resource "azurerm_role_assignment" "envelope_wrap" {
  for_each             = toset(local.backup_principals)
  scope                = azurerm_key_vault_key.envelope.resource_versionless_id
  role_definition_name = "Key Vault Crypto User"
  principal_id         = each.value
}

resource "azurerm_role_definition" "unwrap" {
  name        = "cloudkeep-unwrap-${var.key_vault}"
  scope       = azurerm_resource_group.cloudkeep.id
  description = "cloudkeep restores and pruner: unwrap snapshots' data keys with the envelope key only"
  permissions {
    data_actions = ["Microsoft.KeyVault/vaults/keys/read", "Microsoft.KeyVault/vaults/keys/unwrap/action"]
  }
  assignable_scopes = [azurerm_resource_group.cloudkeep.id] # assigned on the envelope key only
}

resource "azurerm_role_assignment" "envelope_unwrap" {
  for_each           = { restore = local.principal.restore, prune = local.principal.prune }
  scope              = azurerm_key_vault_key.envelope.resource_versionless_id
  role_definition_id = azurerm_role_definition.unwrap.role_definition_resource_id
  principal_id       = each.value
}

data "azurerm_cosmosdb_account" "source" {
  name                = var.cosmos_account
  resource_group_name = var.cosmos_resource_group
}

# Cosmos DB Built-in Data Reader on the account's data plane: reading items and feed ranges.
# (the backup and restore identities: backups read, samples compare with the live items)
resource "azurerm_cosmosdb_sql_role_assignment" "reader" {
  for_each            = { backup = local.principal.backup, restore = local.principal.restore }
  resource_group_name = var.cosmos_resource_group
  account_name        = var.cosmos_account
  role_definition_id  = "${data.azurerm_cosmosdb_account.source.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000001"
  principal_id        = each.value
  scope               = data.azurerm_cosmosdb_account.source.id
}

# Restores and drills write only the restore database (Cosmos DB Built-in Data Contributor on
# that database alone), never the production one.
resource "azurerm_cosmosdb_sql_role_assignment" "restore_writer" {
  count               = var.cosmos_restore_database == "" ? 0 : 1
  resource_group_name = var.cosmos_resource_group
  account_name        = var.cosmos_account
  role_definition_id  = "${data.azurerm_cosmosdb_account.source.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002"
  principal_id        = local.principal.restore
  scope               = "${data.azurerm_cosmosdb_account.source.id}/dbs/${var.cosmos_restore_database}"
}

# Continuous capture (issue #21; capture_cosmos_database / capture_cosmos_container): the backup
# app's Cosmos DB trigger reads the container's change feed as the backup identity (the reader
# role above) and keeps its position in a lease container — the one thing in the account it may
# write (Built-in Data Contributor on that container alone). The changes go to the vault,
# create-only, like every backup write.
locals {
  capture_cosmos = var.capture_cosmos_database != "" && var.capture_cosmos_container != ""
}

resource "azurerm_cosmosdb_sql_container" "leases" {
  count               = local.capture_cosmos ? 1 : 0
  name                = var.capture_lease_container
  resource_group_name = var.cosmos_resource_group
  account_name        = var.cosmos_account
  database_name       = var.capture_cosmos_database
  partition_key_paths = ["/id"]
}

resource "azurerm_cosmosdb_sql_role_assignment" "capture_leases" {
  count               = local.capture_cosmos ? 1 : 0
  resource_group_name = var.cosmos_resource_group
  account_name        = var.cosmos_account
  role_definition_id  = "${data.azurerm_cosmosdb_account.source.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002"
  principal_id        = local.principal.backup
  scope               = "${data.azurerm_cosmosdb_account.source.id}/dbs/${var.capture_cosmos_database}/colls/${var.capture_lease_container}"
}

resource "azurerm_log_analytics_workspace" "cloudkeep" {
  name                = "cloudkeep"
  location            = azurerm_resource_group.cloudkeep.location
  resource_group_name = azurerm_resource_group.cloudkeep.name
  sku                 = "PerGB2018"
  retention_in_days   = 90
}

resource "azurerm_application_insights" "cloudkeep" {
  name                = "cloudkeep"
  location            = azurerm_resource_group.cloudkeep.location
  resource_group_name = azurerm_resource_group.cloudkeep.name
  workspace_id        = azurerm_log_analytics_workspace.cloudkeep.id
  application_type    = "other"
}

resource "azurerm_service_plan" "cloudkeep" {
  #checkov:skip=CKV_AZURE_212:a consumption plan scales to zero; zone redundancy needs an Elastic Premium plan
  #checkov:skip=CKV_AZURE_225:as CKV_AZURE_212
  name                = "cloudkeep"
  location            = azurerm_resource_group.cloudkeep.location
  resource_group_name = azurerm_resource_group.cloudkeep.name
  os_type             = "Linux"
  sku_name            = var.plan_sku
}

resource "azurerm_storage_account" "runtime" {
  #checkov:skip=CKV_AZURE_33:the Functions host manages its own queues
  #checkov:skip=CKV2_AZURE_1:Functions host state only; no backup data here
  #checkov:skip=CKV_AZURE_59:the consumption-plan host needs its public endpoint
  #checkov:skip=CKV_AZURE_206:host state is disposable
  #checkov:skip=CKV2_AZURE_33:see CKV_AZURE_59
  #checkov:skip=CKV_AZURE_35:see CKV_AZURE_59
  #checkov:skip=CKV2_AZURE_40:the consumption-plan host authenticates to its own storage with the account key
  #checkov:skip=CKV2_AZURE_41:see CKV2_AZURE_40
  name                            = "${var.vault_account}fn"
  resource_group_name             = azurerm_resource_group.cloudkeep.name
  location                        = azurerm_resource_group.cloudkeep.location
  account_tier                    = "Standard"
  account_replication_type        = "LRS"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  public_network_access_enabled   = true
  local_user_enabled              = false

  blob_properties {
    delete_retention_policy { days = 7 }
  }
}

# Fan-out: one message per snapshot segment; the `work` queue trigger reads it. Items failing
# five times (host.json maxDequeueCount) move to cloudkeep-work-poison.
resource "azurerm_storage_queue" "work" {
  name               = "cloudkeep-work"
  storage_account_id = azurerm_storage_account.runtime.id
}

# One Function App per identity; CLOUDKEEP_ROLE says which functions it has
# (handlers/azure/function_app.py): backup (tick, work), prune (prune), restore (verify, invoke).
resource "azurerm_linux_function_app" "role" {
  #checkov:skip=CKV_AZURE_221:operators invoke the HTTP trigger from outside; a function key is required (auth_level FUNCTION)
  for_each                      = toset(["backup", "prune", "restore"])
  name                          = "${var.function_app}-${each.key}"
  location                      = azurerm_resource_group.cloudkeep.location
  resource_group_name           = azurerm_resource_group.cloudkeep.name
  service_plan_id               = azurerm_service_plan.cloudkeep.id
  storage_account_name          = azurerm_storage_account.runtime.name
  storage_account_access_key    = azurerm_storage_account.runtime.primary_access_key
  https_only                    = true
  public_network_access_enabled = each.key == "restore" ? true : !var.private_network
  client_certificate_enabled    = true
  client_certificate_mode       = "Optional"
  virtual_network_subnet_id     = var.private_network ? var.function_subnet_id : null

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.role[each.key].id]
  }

  site_config {
    application_insights_connection_string = azurerm_application_insights.cloudkeep.connection_string
    ftps_state                             = "Disabled"
    http2_enabled                          = true
    minimum_tls_version                    = "1.2"
    application_stack { python_version = "3.12" }
  }

  app_settings = {
    CLOUDKEEP_ROLE            = each.key
    CLOUDKEEP_TICK            = var.tick_schedule
    CLOUDKEEP_PRUNE_SCHEDULE  = var.prune_schedule
    CLOUDKEEP_VERIFY_SCHEDULE = var.verify_schedule
    CLOUDKEEP_POLICY          = "az://${azurerm_storage_account.vault.name}/${azurerm_storage_container.config.name}/cloudkeep.yaml"
    AZURE_CLIENT_ID           = azurerm_user_assigned_identity.role[each.key].client_id
    FUNCTIONS_WORKER_RUNTIME  = "python"
    # The work queue lives in the host's storage account (AzureWebJobsStorage).
    CLOUDKEEP_WORK_QUEUE      = "azure_queue:${azurerm_storage_queue.work.name}"
    CLOUDKEEP_WORK_QUEUE_NAME = azurerm_storage_queue.work.name
    # Continuous capture: the backup app's Cosmos DB trigger (empty elsewhere: no trigger).
    CLOUDKEEP_COSMOS_DATABASE         = each.key == "backup" && local.capture_cosmos ? var.capture_cosmos_database : ""
    CLOUDKEEP_COSMOS_CONTAINER        = each.key == "backup" && local.capture_cosmos ? var.capture_cosmos_container : ""
    CLOUDKEEP_COSMOS_LEASES           = var.capture_lease_container
    CLOUDKEEP_COSMOS__accountEndpoint = data.azurerm_cosmosdb_account.source.endpoint
    CLOUDKEEP_COSMOS__credential      = "managedidentity"
    CLOUDKEEP_COSMOS__clientId        = azurerm_user_assigned_identity.role[each.key].client_id
  }
}

resource "azurerm_monitor_action_group" "alerts" {
  name                = "cloudkeep-alerts"
  resource_group_name = azurerm_resource_group.cloudkeep.name
  short_name          = "cloudkeep"
  email_receiver {
    name          = "operators"
    email_address = var.alert_email
  }
}

# The metric lines of the tick (one JSON line per metric with its name, value, dataset and
# tier: custom dimensions where the host keeps them, else the JSON message; both forms are read).
locals {
  cloudkeep_metric_lines = <<-KQL
    traces
    | extend payload = iff(isnotempty(customDimensions.metric), todynamic(customDimensions),
                           parse_json(extract(@"(\{.*\})", 1, message)))
    | extend metric = tostring(payload.metric), value = todouble(payload.value),
             dataset = tostring(payload.dataset), tier = tostring(payload.tier)
    | where isnotempty(metric)
  KQL
}

# Failures: a failed run (the tick raises when a dataset failed), a backup that failed, a dataset
# past its RPO (RpoBreached = 1) or a verification that failed (VerificationFailed = 1).
resource "azurerm_monitor_scheduled_query_rules_alert_v2" "failures" {
  name                 = "cloudkeep-failures"
  resource_group_name  = azurerm_resource_group.cloudkeep.name
  location             = azurerm_resource_group.cloudkeep.location
  scopes               = [azurerm_application_insights.cloudkeep.id]
  severity             = 1
  evaluation_frequency = "PT15M"
  window_duration      = "PT15M"
  criteria {
    query                   = <<-KQL
      requests
      | where success == false and operation_Name in ('tick', 'work', 'prune', 'verify', 'invoke')
      | project timestamp, dataset = ''
      | union (${local.cloudkeep_metric_lines}
          | where metric in ('BackupFailed', 'RpoBreached', 'VerificationFailed') and value > 0
          | project timestamp, dataset)
    KQL
    time_aggregation_method = "Count"
    operator                = "GreaterThan"
    threshold               = 0
  }
  action { action_groups = [azurerm_monitor_action_group.alerts.id] }
}

# The tick stopped reporting: no watchdog line (SnapshotAgeSeconds or RpoBreached, logged for
# every dataset on every tick) within an hour — the tick is not running, or dies before it.
resource "azurerm_monitor_scheduled_query_rules_alert_v2" "tick_stopped" {
  name                 = "cloudkeep-tick-stopped"
  resource_group_name  = azurerm_resource_group.cloudkeep.name
  location             = azurerm_resource_group.cloudkeep.location
  scopes               = [azurerm_application_insights.cloudkeep.id]
  severity             = 1
  evaluation_frequency = "PT15M"
  window_duration      = "PT1H"
  criteria {
    query                   = "${local.cloudkeep_metric_lines}| where metric in ('SnapshotAgeSeconds', 'RpoBreached')"
    time_aggregation_method = "Count"
    operator                = "LessThan"
    threshold               = 1
  }
  action { action_groups = [azurerm_monitor_action_group.alerts.id] }
}
