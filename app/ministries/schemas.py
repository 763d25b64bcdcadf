from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict


class MinistryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    name: str
    name_ja: str
    country: str
    timezone: str
    kind: Literal["co_lead", "partner"]
