# cloudkeep on Google Cloud: 2nd-gen Cloud Functions woken by Cloud Scheduler through Pub/Sub —
# the tick (and its fan-out workers), the pruner and the verifier, each with its own service
# account (docs/threat-model.md) —, an HTTP function for on-demand actions, a versioned vault
# bucket with a retention policy (lockable: lock_retention), the policy in a config bucket the
# functions only read, a Firestore database for drills, and alerts on failures.

terraform {
  required_version = ">= 1.5"
  required_providers {
    google = { source = "hashicorp/google", version = "~> 6.0" }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}

# One service account per duty (docs/threat-model.md): backup (tick, work) reads the sources
# and the vault and creates objects — objectCreator cannot overwrite (that needs delete) —;
# the pruner is the only one that deletes; restore (verify, invoke) restores into the drill /
# restore databases only and is the one that decrypts snapshots' data keys.
resource "google_service_account" "backup" {
  account_id   = "cloudkeep-backup"
  display_name = "cloudkeep backups (tick, work): read and create only"
}

resource "google_service_account" "pruner" {
  account_id   = "cloudkeep-pruner"
  display_name = "cloudkeep pruner: the only identity that deletes"
}

resource "google_service_account" "restore" {
  account_id   = "cloudkeep-restore"
  display_name = "cloudkeep restores, drills and scheduled verifications"
}

# The invoke function runs as the restore account, or — where an operator sets invoke_union —
# as one holding the union of the three roles.
resource "google_service_account" "union" {
  count        = var.invoke_union ? 1 : 0
  account_id   = "cloudkeep-union"
  display_name = "cloudkeep invoke with the union of the roles (invoke_union)"
}

locals {
  invoke_account = var.invoke_union ? google_service_account.union[0].email : google_service_account.restore.email
  union_member   = var.invoke_union ? ["serviceAccount:${google_service_account.union[0].email}"] : []
  policy_url     = "gs://${google_storage_bucket.config.name}/cloudkeep.yaml"
  # Firestore databases the restore account may write: the drill database and the named restore
  # targets (never the production database).
  firestore_writable = concat(
    ["projects/${var.project}/databases/${var.firestore_drill_database}"],
    [for db in var.firestore_restore_databases : "projects/${var.project}/databases/${db}"],
  )
  firestore_writable_condition = join(" || ", [for name in local.firestore_writable : "resource.name == \"${name}\""])
}

# Read Firestore (scans, samples): the backup and restore accounts.
resource "google_project_iam_member" "firestore_read" {
  for_each = toset(concat(["serviceAccount:${google_service_account.backup.email}",
  "serviceAccount:${google_service_account.restore.email}"], local.union_member))
  project = var.project
  role    = "roles/datastore.viewer"
  member  = each.value
}

# method: export — the backup account starts managed exports (and polls them); it cannot import.
resource "google_project_iam_custom_role" "firestore_export" {
  count       = var.firestore_export ? 1 : 0
  role_id     = "cloudkeepFirestoreExport"
  title       = "cloudkeep Firestore export (no import)"
  permissions = ["datastore.databases.export", "datastore.databases.getMetadata", "datastore.operations.get", "datastore.operations.list"]
}

resource "google_project_iam_member" "firestore_export" {
  count   = var.firestore_export ? 1 : 0
  project = var.project
  role    = google_project_iam_custom_role.firestore_export[0].id
  member  = "serviceAccount:${google_service_account.backup.email}"
}

# Restores and drills write only the drill database and the named restore databases (an IAM
# condition on the database's resource name), imports included.
resource "google_project_iam_custom_role" "firestore_import" {
  role_id     = "cloudkeepFirestoreImport"
  title       = "cloudkeep Firestore import (drill and restore databases only)"
  permissions = ["datastore.databases.import", "datastore.databases.getMetadata", "datastore.operations.get", "datastore.operations.list"]
}

# Restores re-create the recorded composite indexes and TTL policies of the restored collection
# groups (docs/restore-settings.md), in the drill and restore databases only. (Reading them at
# backup time is in roles/datastore.viewer: datastore.indexes.list.)
resource "google_project_iam_custom_role" "firestore_settings" {
  role_id     = "cloudkeepFirestoreSettings"
  title       = "cloudkeep Firestore indexes and TTL policies (drill and restore databases only)"
  permissions = ["datastore.indexes.create", "datastore.indexes.update", "datastore.indexes.get", "datastore.indexes.list", "datastore.operations.get"]
}

resource "google_project_iam_member" "firestore_settings" {
  for_each = toset(concat(["serviceAccount:${google_service_account.restore.email}"], local.union_member))
  project  = var.project
  role     = google_project_iam_custom_role.firestore_settings.id
  member   = each.value
  condition {
    title      = "cloudkeep-drill-and-restore-databases"
    expression = local.firestore_writable_condition
  }
}

resource "google_project_iam_member" "firestore_restore" {
  for_each = toset(concat(["serviceAccount:${google_service_account.restore.email}"], local.union_member))
  project  = var.project
  role     = "roles/datastore.user"
  member   = each.value
  condition {
    title      = "cloudkeep-drill-and-restore-databases"
    expression = local.firestore_writable_condition
  }
}

resource "google_project_iam_member" "firestore_import" {
  for_each = toset(concat(["serviceAccount:${google_service_account.restore.email}"], local.union_member))
  project  = var.project
  role     = google_project_iam_custom_role.firestore_import.id
  member   = each.value
  condition {
    title      = "cloudkeep-drill-and-restore-databases"
    expression = local.firestore_writable_condition
  }
}

# The drill database: Firestore drills restore into it (verify --level drill), never into
# collections of the production database.
resource "google_firestore_database" "drill" {
  count                   = var.firestore_drills ? 1 : 0
  name                    = var.firestore_drill_database
  location_id             = var.firestore_location
  type                    = "FIRESTORE_NATIVE"
  delete_protection_state = "DELETE_PROTECTION_DISABLED"
  deletion_policy         = "DELETE"
}

data "google_project" "this" {}

# ... exports, which Firestore's own service agent writes into the vault bucket: create, list
# and read only (a custom role: no delete, so no overwrite).
resource "google_project_iam_custom_role" "export_writer" {
  count       = var.firestore_export ? 1 : 0
  role_id     = "cloudkeepExportWriter"
  title       = "cloudkeep: Firestore exports into the vault (create only)"
  permissions = ["storage.buckets.get", "storage.objects.create", "storage.objects.get", "storage.objects.list"]
}

resource "google_storage_bucket_iam_member" "firestore_agent_writes_exports" {
  count  = var.firestore_export ? 1 : 0
  bucket = google_storage_bucket.vault.name
  role   = google_project_iam_custom_role.export_writer[0].id
  member = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-firestore.iam.gserviceaccount.com"
}

resource "google_kms_key_ring" "cloudkeep" {
  name     = "cloudkeep"
  location = var.region
}

resource "google_kms_crypto_key" "vault" {
  name            = "vault"
  key_ring        = google_kms_key_ring.cloudkeep.id
  rotation_period = "7776000s"
  lifecycle { prevent_destroy = true }
}

# cloudkeep's client-side envelope encryption: the policy's gcp_kms key wraps each snapshot's
# data key. The restore account decrypts; the pruner decrypts to check manifests' tags; the
# backup account encrypts — and decrypts too, because Cloud KMS IAM cannot condition on the
# additional authenticated data (the run state's purpose-bound wrap is not enforceable here:
# docs/threat-model.md). Each on this one key only.
resource "google_kms_crypto_key" "envelope" {
  name            = "envelope"
  key_ring        = google_kms_key_ring.cloudkeep.id
  rotation_period = "7776000s"
  lifecycle { prevent_destroy = true }
}

resource "google_kms_crypto_key_iam_member" "backup_wraps" {
  crypto_key_id = google_kms_crypto_key.envelope.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${google_service_account.backup.email}"
}

resource "google_kms_crypto_key_iam_member" "unwraps" {
  for_each = toset(concat(["serviceAccount:${google_service_account.restore.email}",
  "serviceAccount:${google_service_account.pruner.email}"], local.union_member))
  crypto_key_id = google_kms_crypto_key.envelope.id
  role          = "roles/cloudkms.cryptoKeyDecrypter"
  member        = each.value
}

data "google_storage_project_service_account" "gcs" {}

resource "google_kms_crypto_key_iam_member" "gcs_uses_key" {
  crypto_key_id = google_kms_crypto_key.vault.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_storage_bucket" "access_logs" {
  name                        = "${var.vault_bucket}-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning { enabled = true }
  #checkov:skip=CKV_GCP_62:this is the access-log bucket itself
}

resource "google_storage_bucket" "vault" {
  name                        = var.vault_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning { enabled = true }

  # Objects cannot be deleted or replaced before this many seconds (WORM). lock_retention
  # locks it: then no one — not the project owner — can shorten or remove it, or delete the
  # bucket while it holds objects younger than the period (variables.tf).
  retention_policy {
    retention_period = var.retention_seconds
    is_locked        = var.lock_retention
  }

  encryption { default_kms_key_name = google_kms_crypto_key.vault.id }
  logging { log_bucket = google_storage_bucket.access_logs.name }

  depends_on = [google_kms_crypto_key_iam_member.gcs_uses_key]
}

# The vault, per identity: every function reads; backup, pruner and restore create
# (objectCreator: no overwrite, which would need delete); only the pruner deletes.
resource "google_storage_bucket_iam_member" "vault_read" {
  for_each = toset(concat(["serviceAccount:${google_service_account.backup.email}",
    "serviceAccount:${google_service_account.pruner.email}",
  "serviceAccount:${google_service_account.restore.email}"], local.union_member))
  bucket = google_storage_bucket.vault.name
  role   = "roles/storage.objectViewer"
  member = each.value
}

resource "google_storage_bucket_iam_member" "vault_create" {
  for_each = toset(concat(["serviceAccount:${google_service_account.backup.email}",
    "serviceAccount:${google_service_account.pruner.email}",
  "serviceAccount:${google_service_account.restore.email}"], local.union_member))
  bucket = google_storage_bucket.vault.name
  role   = "roles/storage.objectCreator"
  member = each.value
}

resource "google_project_iam_custom_role" "pruner" {
  role_id     = "cloudkeepPruner"
  title       = "cloudkeep pruner: delete vault objects (the bucket retention still applies)"
  permissions = ["storage.objects.delete"]
}

resource "google_storage_bucket_iam_member" "vault_delete" {
  for_each = toset(concat(["serviceAccount:${google_service_account.pruner.email}"], local.union_member))
  bucket   = google_storage_bucket.vault.name
  role     = google_project_iam_custom_role.pruner.id
  member   = each.value
}

# The policy cloudkeep.yaml: written by the deployment (CI / IaC), only read by the functions.
resource "google_storage_bucket" "config" {
  name                        = "${var.vault_bucket}-config"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning { enabled = true }
  encryption { default_kms_key_name = google_kms_crypto_key.vault.id }
  logging { log_bucket = google_storage_bucket.access_logs.name }
  depends_on = [google_kms_crypto_key_iam_member.gcs_uses_key]
}

resource "google_storage_bucket_iam_member" "config_read" {
  for_each = toset(concat(["serviceAccount:${google_service_account.backup.email}",
    "serviceAccount:${google_service_account.pruner.email}",
  "serviceAccount:${google_service_account.restore.email}"], local.union_member))
  bucket = google_storage_bucket.config.name
  role   = "roles/storage.objectViewer"
  member = each.value
}

resource "google_storage_bucket" "source" {
  name                        = "${var.vault_bucket}-functions"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning { enabled = true }
  logging { log_bucket = google_storage_bucket.access_logs.name }
}

resource "google_storage_bucket_object" "source" {
  name   = "cloudkeep-${filemd5(var.source_zip)}.zip"
  bucket = google_storage_bucket.source.name
  source = var.source_zip
}

resource "google_pubsub_topic" "tick" {
  name         = "cloudkeep-tick"
  kms_key_name = google_kms_crypto_key.vault.id
}

# cloudkeep's own alerts (backup failed, RPO breached, verification failed, recoveries): name this
# topic in the policy, alerts: {pubsub: {topic: projects/<project>/topics/cloudkeep-alerts}}.
resource "google_pubsub_topic" "alerts" {
  name         = "cloudkeep-alerts"
  kms_key_name = google_kms_crypto_key.vault.id
}

resource "google_pubsub_topic_iam_member" "alerts_publisher" {
  for_each = toset(concat(["serviceAccount:${google_service_account.backup.email}",
  "serviceAccount:${google_service_account.restore.email}"], local.union_member))
  topic  = google_pubsub_topic.alerts.id
  role   = "roles/pubsub.publisher"
  member = each.value
}

resource "google_cloud_scheduler_job" "tick" {
  name      = "cloudkeep-tick"
  schedule  = "*/15 * * * *"
  time_zone = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.tick.id
    data       = base64encode(jsonencode({ tick = true }))
  }
}

resource "google_cloudfunctions2_function" "tick" {
  name     = "cloudkeep-tick"
  location = var.region

  build_config {
    runtime     = "python312"
    entry_point = "tick"
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    timeout_seconds                = 540
    available_memory               = "1Gi"
    max_instance_count             = 1
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.backup.email
    environment_variables = {
      CLOUDKEEP_POLICY     = local.policy_url
      CLOUDKEEP_WORK_QUEUE = "pubsub:${google_pubsub_topic.work.id}"
    }
  }

  event_trigger {
    trigger_region = var.region
    event_type     = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic   = google_pubsub_topic.tick.id
    retry_policy   = "RETRY_POLICY_RETRY"
  }
}

# Fan-out: one message per snapshot segment on cloudkeep-work, read by the cloudkeep-work
# function; the tick publishes them, a worker nearing its timeout publishes its item again.
resource "google_pubsub_topic" "work" {
  name         = "cloudkeep-work"
  kms_key_name = google_kms_crypto_key.vault.id
}

resource "google_pubsub_topic" "work_dead_letters" {
  name         = "cloudkeep-work-dead-letters"
  kms_key_name = google_kms_crypto_key.vault.id
}

resource "google_pubsub_subscription" "work_dead_letters" {
  name                       = "cloudkeep-work-dead-letters"
  topic                      = google_pubsub_topic.work_dead_letters.id
  message_retention_duration = "604800s"
}

resource "google_pubsub_topic_iam_member" "work_publish" {
  for_each = toset(concat(["serviceAccount:${google_service_account.backup.email}"], local.union_member))
  topic    = google_pubsub_topic.work.id
  role     = "roles/pubsub.publisher"
  member   = each.value
}

resource "google_cloudfunctions2_function" "work" {
  name     = "cloudkeep-work"
  location = var.region

  build_config {
    runtime     = "python312"
    entry_point = "work"
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    timeout_seconds                = 540
    available_memory               = "1Gi"
    max_instance_count             = var.workers
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.backup.email
    environment_variables = {
      CLOUDKEEP_POLICY       = local.policy_url
      CLOUDKEEP_WORK_QUEUE   = "pubsub:${google_pubsub_topic.work.id}"
      CLOUDKEEP_WORK_TIMEOUT = "540"
    }
  }

  event_trigger {
    trigger_region = var.region
    event_type     = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic   = google_pubsub_topic.work.id
    retry_policy   = "RETRY_POLICY_RETRY"
  }
}

# The pruner and the verifier: each its own function, service account and schedule.
resource "google_pubsub_topic" "scheduled" {
  for_each     = toset(["prune", "verify"])
  name         = "cloudkeep-${each.key}"
  kms_key_name = google_kms_crypto_key.vault.id
}

resource "google_cloud_scheduler_job" "scheduled" {
  for_each  = { prune = var.prune_schedule, verify = var.verify_schedule }
  name      = "cloudkeep-${each.key}"
  schedule  = each.value
  time_zone = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.scheduled[each.key].id
    data       = base64encode(jsonencode({ (each.key) = true }))
  }
}

resource "google_cloudfunctions2_function" "scheduled" {
  for_each = {
    prune  = google_service_account.pruner.email
    verify = google_service_account.restore.email
  }
  name     = "cloudkeep-${each.key}"
  location = var.region

  build_config {
    runtime     = "python312"
    entry_point = each.key
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    timeout_seconds                = 540
    available_memory               = "1Gi"
    max_instance_count             = 1
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = each.value
    environment_variables = {
      CLOUDKEEP_POLICY = local.policy_url
    }
  }

  event_trigger {
    trigger_region = var.region
    event_type     = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic   = google_pubsub_topic.scheduled[each.key].id
    retry_policy   = "RETRY_POLICY_DO_NOT_RETRY"
  }
}

resource "google_cloudfunctions2_function" "invoke" {
  #checkov:skip=CKV_GCP_124:operators call it from their machines with an identity token; no allUsers invoker binding exists, so IAM (roles/run.invoker) still gates every call
  name     = "cloudkeep-invoke"
  location = var.region

  build_config {
    runtime     = "python312"
    entry_point = "invoke"
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    timeout_seconds       = 3600
    available_memory      = "1Gi"
    max_instance_count    = 2
    ingress_settings      = "ALLOW_ALL"
    service_account_email = local.invoke_account
    environment_variables = {
      CLOUDKEEP_POLICY = local.policy_url
    }
  }
}

# Failures: every tick or dataset failure is logged at severity ERROR by the function.
resource "google_logging_metric" "backup_failed" {
  name   = "cloudkeep/backup_failed"
  filter = "resource.type=\"cloud_run_revision\" AND jsonPayload.metric=\"BackupFailed\""
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "dataset"
      value_type = "STRING"
    }
  }
  label_extractors = { dataset = "EXTRACT(jsonPayload.dataset)" }
}

resource "google_monitoring_notification_channel" "email" {
  display_name = "cloudkeep alerts"
  type         = "email"
  labels       = { email_address = var.alert_email }
}

resource "google_monitoring_alert_policy" "backup_failed" {
  display_name = "cloudkeep: a backup failed"
  combiner     = "OR"
  conditions {
    display_name = "BackupFailed > 0"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.backup_failed.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "900s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }
  notification_channels = [google_monitoring_notification_channel.email.id]
}

resource "google_monitoring_alert_policy" "tick_stopped" {
  display_name = "cloudkeep: the tick stopped running"
  combiner     = "OR"
  conditions {
    display_name = "no tick execution for an hour"
    condition_absent {
      filter   = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"cloudkeep-tick\""
      duration = "3600s"
      aggregations {
        alignment_period   = "900s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }
  notification_channels = [google_monitoring_notification_channel.email.id]
}

# The freshness watchdog and verifications: every tick logs one JSON line per metric
# ({"metric": NAME, "value": V, "dataset": ..., "tier": ...}; see the README's metric names).
resource "google_logging_metric" "signals" {
  for_each = {
    rpo_breached        = "RpoBreached"
    verification_failed = "VerificationFailed"
    capture_gaps        = "CaptureGaps"
  }
  name   = "cloudkeep/${each.key}"
  filter = "resource.type=\"cloud_run_revision\" AND jsonPayload.metric=\"${each.value}\" AND jsonPayload.value>0"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    labels {
      key        = "dataset"
      value_type = "STRING"
    }
    labels {
      key        = "tier"
      value_type = "STRING"
    }
  }
  label_extractors = {
    dataset = "EXTRACT(jsonPayload.dataset)"
    tier    = "EXTRACT(jsonPayload.tier)"
  }
}

resource "google_logging_metric" "seconds" {
  for_each = {
    snapshot_age_seconds  = "SnapshotAgeSeconds"
    restore_drill_seconds = "RestoreDrillSeconds"
    capture_lag_seconds   = "CaptureLagSeconds"
  }
  name            = "cloudkeep/${each.key}"
  filter          = "resource.type=\"cloud_run_revision\" AND jsonPayload.metric=\"${each.value}\""
  value_extractor = "EXTRACT(jsonPayload.value)"
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "s"
    labels {
      key        = "dataset"
      value_type = "STRING"
    }
    labels {
      key        = "tier"
      value_type = "STRING"
    }
  }
  label_extractors = {
    dataset = "EXTRACT(jsonPayload.dataset)"
    tier    = "EXTRACT(jsonPayload.tier)"
  }
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 32
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "google_monitoring_alert_policy" "signals" {
  for_each     = google_logging_metric.signals
  display_name = "cloudkeep: ${lookup({
    rpo_breached        = "a dataset is past its RPO"
    verification_failed = "a verification failed"
    capture_gaps        = "the change log has a gap (continuous capture)"
  }, each.key, each.key)}"
  combiner     = "OR"
  conditions {
    display_name = "${each.key} > 0"
    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${each.value.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.dataset"]
      }
    }
  }
  notification_channels = [google_monitoring_notification_channel.email.id]
}

# The tick stopped reporting: the watchdog logs SnapshotAgeSeconds for every dataset on every
# tick, so its absence for an hour means the tick is not running or dies before the watchdog.
resource "google_monitoring_alert_policy" "tick_not_reporting" {
  display_name = "cloudkeep: the tick stopped reporting"
  combiner     = "OR"
  conditions {
    display_name = "no SnapshotAgeSeconds for an hour"
    condition_absent {
      filter   = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.seconds["snapshot_age_seconds"].name}\" AND resource.type=\"cloud_run_revision\""
      duration = "3600s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_COUNT"
      }
    }
  }
  notification_channels = [google_monitoring_notification_channel.email.id]
}

# Continuous capture (issue #21; capture_firestore): every write of a document of the database
# reaches cloudkeep-capture as a google.cloud.firestore.document.v1.written CloudEvent (Eventarc,
# DocumentEventData with old and new value), which appends it to the change log of the
# continuous datasets of that database. It runs as the backup account — read Firestore, create
# objects in the vault, never delete or overwrite — which Eventarc also uses to deliver the
# events (eventarc.eventReceiver, and run.invoker on this one function only).
resource "google_cloudfunctions2_function" "capture" {
  count    = var.capture_firestore ? 1 : 0
  name     = "cloudkeep-capture"
  location = var.region

  build_config {
    runtime     = "python312"
    entry_point = "capture"
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    timeout_seconds                = 120
    available_memory               = "512Mi"
    max_instance_count             = 20
    ingress_settings               = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.backup.email
    environment_variables = {
      CLOUDKEEP_POLICY = local.policy_url
    }
  }

  event_trigger {
    trigger_region        = var.capture_trigger_region
    event_type            = "google.cloud.firestore.document.v1.written"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.backup.email
    event_filters {
      attribute = "database"
      value     = var.capture_firestore_database
    }
    event_filters {
      attribute = "document"
      value     = var.capture_document_pattern
      operator  = "match-path-pattern"
    }
  }
}

resource "google_project_iam_member" "capture_event_receiver" {
  count   = var.capture_firestore ? 1 : 0
  project = var.project
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.backup.email}"
}

resource "google_cloud_run_service_iam_member" "capture_invoker" {
  count    = var.capture_firestore ? 1 : 0
  location = var.region
  service  = google_cloudfunctions2_function.capture[0].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.backup.email}"
}
