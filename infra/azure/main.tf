# cloudkeep on Azure: a Linux Function App (Python, v2 programming model) with a timer trigger
# (NCRONTAB from app setting CLOUDKEEP_TICK) and an HTTP trigger, a vault storage account with
# versioning and a time-based immutability policy on the vault container, a user-assigned
# identity with the least roles it needs, Application Insights and an alert on failures.

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

resource "azurerm_user_assigned_identity" "cloudkeep" {
  name                = "cloudkeep"
  location            = azurerm_resource_group.cloudkeep.location
  resource_group_name = azurerm_resource_group.cloudkeep.name
}

resource "azurerm_storage_account" "vault" {
  #checkov:skip=CKV_AZURE_33:queue logging does not apply: the account serves blobs only
  #checkov:skip=CKV2_AZURE_1:customer-managed keys are optional; data at rest uses Microsoft-managed keys
  #checkov:skip=CKV_AZURE_59:the function reaches the vault over its public endpoint; restrict with network_rules to your VNet when the app is VNet-integrated
  #checkov:skip=CKV_AZURE_206:LRS by default to keep costs predictable; set account_replication_type = "GRS" for a second region
  #checkov:skip=CKV2_AZURE_33:private endpoints depend on the customer's network; see CKV_AZURE_59
  #checkov:skip=CKV_AZURE_35:default action deny would lock out the consumption-plan function (see CKV_AZURE_59)
  name                            = var.vault_account
  resource_group_name             = azurerm_resource_group.cloudkeep.name
  location                        = azurerm_resource_group.cloudkeep.location
  account_tier                    = "Standard"
  account_replication_type        = "LRS"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  public_network_access_enabled   = true
  local_user_enabled              = false

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

# WORM: blobs in the vault container cannot be changed or deleted for this many days.
resource "azurerm_storage_container_immutability_policy" "vault" {
  storage_container_resource_manager_id = azurerm_storage_container.vault.resource_manager_id
  immutability_period_in_days           = var.immutability_days
  protected_append_writes_all_enabled   = false
}

resource "azurerm_role_assignment" "vault_blobs" {
  scope                = azurerm_storage_container.vault.resource_manager_id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = azurerm_user_assigned_identity.cloudkeep.principal_id
}

# cloudkeep's client-side envelope encryption: the policy's azure_key_vault key wraps each
# snapshot's data key; the function's identity gets "Key Vault Crypto User" on this key only.
data "azurerm_client_config" "current" {}

resource "azurerm_key_vault" "cloudkeep" {
  #checkov:skip=CKV2_AZURE_32:private endpoints depend on the customer's network (as the vault account)
  #checkov:skip=CKV_AZURE_189:the consumption-plan function reaches Key Vault over its public endpoint (as the vault account, CKV_AZURE_59); access is by RBAC on one key
  #checkov:skip=CKV_AZURE_109:default action deny would lock out the consumption-plan function (as the vault account, CKV_AZURE_35)
  name                          = var.key_vault
  location                      = azurerm_resource_group.cloudkeep.location
  resource_group_name           = azurerm_resource_group.cloudkeep.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  sku_name                      = "premium"
  rbac_authorization_enabled    = true
  purge_protection_enabled      = true
  soft_delete_retention_days    = 90
  public_network_access_enabled = true

  network_acls {
    default_action = "Allow"
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

resource "azurerm_role_assignment" "envelope_key" {
  scope                = azurerm_key_vault_key.envelope.resource_versionless_id
  role_definition_name = "Key Vault Crypto User"
  principal_id         = azurerm_user_assigned_identity.cloudkeep.principal_id
}

data "azurerm_cosmosdb_account" "source" {
  name                = var.cosmos_account
  resource_group_name = var.cosmos_resource_group
}

# Cosmos DB Built-in Data Reader on the account's data plane: reading items and feed ranges.
resource "azurerm_cosmosdb_sql_role_assignment" "reader" {
  resource_group_name = var.cosmos_resource_group
  account_name        = var.cosmos_account
  role_definition_id  = "${data.azurerm_cosmosdb_account.source.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000001"
  principal_id        = azurerm_user_assigned_identity.cloudkeep.principal_id
  scope               = data.azurerm_cosmosdb_account.source.id
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
  sku_name            = "Y1"
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

resource "azurerm_linux_function_app" "cloudkeep" {
  #checkov:skip=CKV_AZURE_221:operators invoke the HTTP trigger from outside; a function key is required (auth_level FUNCTION)
  name                          = var.function_app
  location                      = azurerm_resource_group.cloudkeep.location
  resource_group_name           = azurerm_resource_group.cloudkeep.name
  service_plan_id               = azurerm_service_plan.cloudkeep.id
  storage_account_name          = azurerm_storage_account.runtime.name
  storage_account_access_key    = azurerm_storage_account.runtime.primary_access_key
  https_only                    = true
  public_network_access_enabled = true
  client_certificate_enabled    = true
  client_certificate_mode       = "Optional"

  identity {
    type         = "UserAssigned"
    identity_ids = [azurerm_user_assigned_identity.cloudkeep.id]
  }

  site_config {
    application_insights_connection_string = azurerm_application_insights.cloudkeep.connection_string
    ftps_state                             = "Disabled"
    http2_enabled                          = true
    minimum_tls_version                    = "1.2"
    application_stack { python_version = "3.12" }
  }

  app_settings = {
    CLOUDKEEP_TICK           = var.tick_schedule
    CLOUDKEEP_POLICY         = "az://${azurerm_storage_account.vault.name}/${azurerm_storage_container.vault.name}/cloudkeep.yaml"
    AZURE_CLIENT_ID          = azurerm_user_assigned_identity.cloudkeep.client_id
    FUNCTIONS_WORKER_RUNTIME = "python"
    # The work queue lives in the host's storage account (AzureWebJobsStorage).
    CLOUDKEEP_WORK_QUEUE      = "azure_queue:${azurerm_storage_queue.work.name}"
    CLOUDKEEP_WORK_QUEUE_NAME = azurerm_storage_queue.work.name
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
      | where success == false and operation_Name in ('tick', 'work', 'invoke')
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
