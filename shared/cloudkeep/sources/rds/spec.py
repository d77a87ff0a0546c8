"""The policy spec of an RDS source (``type: rds``): native snapshots only."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from ...specs import Model, SourceModel

_RDS_ID = r"^[A-Za-z](?:-?[A-Za-z0-9])*$"  # no "--", no trailing "-"


class RdsCopyTo(Model):
    """Where each RDS snapshot is copied: another region, optionally another account (through a
    role there), encrypted with a KMS key of the destination."""

    region: str = Field(min_length=1)
    account_role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    kms_key_id: str | None = Field(default=None, min_length=1)


class RdsSourceSpec(SourceModel):
    """An RDS DB instance or Aurora cluster, backed up by native (tagged) snapshots."""

    IMPLEMENTATION: ClassVar[str] = "cloudkeep.sources.rds:RdsSource"
    HAS_REGION: ClassVar[bool] = False  # its region is not checked against residency (as before)

    type: Literal["rds"]
    instance: str | None = Field(default=None, max_length=63, pattern=_RDS_ID)
    cluster: str | None = Field(default=None, max_length=63, pattern=_RDS_ID)
    region: str = Field(min_length=1)
    copy_to: RdsCopyTo | None = None

    @model_validator(mode="after")
    def _one_target(self) -> RdsSourceSpec:
        if (self.instance is None) == (self.cluster is None):
            raise ValueError("give exactly one of 'instance' (a DB instance) or 'cluster' (an Aurora cluster)")
        return self

    def runs_native_jobs(self) -> bool:
        return True
