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

variable "allow_restore" {
  description = "Grant Firestore write access so on-demand restores can run in the function"
  type        = bool
  default     = false
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
