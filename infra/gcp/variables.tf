variable "project" {
  description = "Google Cloud project to deploy into"
  type        = string
}

variable "region" {
  description = "Region of the functions, bucket and scheduler"
  type        = string
  default     = "europe-west1"
}

variable "vault_bucket" {
  description = "Name of the vault bucket (globally unique)"
  type        = string
}

variable "retention_seconds" {
  description = "Bucket retention policy: minimum age before an object may be deleted"
  type        = number
  default     = 604800
}

variable "lock_retention" {
  description = <<-EOT
    Lock the vault's retention policy. Irreversible: once locked, nobody (not the project owner)
    can shorten or remove the retention period, no object can be deleted or replaced before it
    is that old, and the bucket cannot be deleted while it holds such objects — a mistaken
    retention_seconds is paid for in storage until it runs out. Set it once the value is final.
  EOT
  type        = bool
  default     = false
}

variable "invoke_union" {
  description = "Run the invoke function with the union of the backup, pruner and restore roles (else: the restore role)"
  type        = bool
  default     = false
}

variable "prune_schedule" {
  description = "Cloud Scheduler cron of the pruner"
  type        = string
  default     = "30 * * * *"
}

variable "verify_schedule" {
  description = "Cloud Scheduler cron of the verifier (the tiers' verify schedules decide what is due)"
  type        = string
  default     = "*/15 * * * *"
}

variable "firestore_drills" {
  description = "Create the Firestore database that drills restore into (firestore_drill_database)"
  type        = bool
  default     = true
}

variable "firestore_drill_database" {
  description = "Firestore database id for drills (the restore account may write only it and firestore_restore_databases)"
  type        = string
  default     = "cloudkeep-drill"
}

variable "firestore_restore_databases" {
  description = "Firestore database ids restores may write into (never the production database)"
  type        = list(string)
  default     = []
}

variable "firestore_location" {
  description = "Location of the drill database (that of the production database)"
  type        = string
  default     = "eur3"
}

variable "alert_email" {
  description = "Where failure alerts go"
  type        = string
}

variable "source_zip" {
  description = "Zip of the function source: handlers/gcp_function.py as main.py, shared/cloudkeep, requirements"
  type        = string
  default     = "../../.build/gcp-function.zip"
}

variable "firestore_export" {
  description = "Allow Firestore datasets with method: export (managed export into the vault bucket)"
  type        = bool
  default     = false
}

variable "workers" {
  description = "Fan-out: work items (snapshot segments) read at once by cloudkeep-work"
  type        = number
  default     = 8
}

variable "capture_firestore" {
  description = "Continuous capture (issue #21): deploy cloudkeep-capture on the Firestore database's google.cloud.firestore.document.v1.written events (Eventarc), run by the backup account"
  type        = bool
  default     = false
}

variable "capture_firestore_database" {
  description = "The Firestore database whose document writes are captured"
  type        = string
  default     = "(default)"
}

variable "capture_document_pattern" {
  description = "Which documents trigger capture (Eventarc path pattern; the policy's collections filter further)"
  type        = string
  default     = "{document=**}"
}

variable "capture_trigger_region" {
  description = "Region of the Eventarc trigger: the Firestore database's location (e.g. eur3, nam5, europe-west1)"
  type        = string
  default     = "eur3"
}
