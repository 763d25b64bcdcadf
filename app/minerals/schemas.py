from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MineralOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name_en: str
    name_ja: str
    group: str
    hs_codes: list[str]
