"""A contact: the person an opportunity sells to; letters use its name and address."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr

from sales.validation import Identifier, Line, ShortLine


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    contact_id: Identifier
    first_name: ShortLine
    last_name: ShortLine
    email: EmailStr | None = None
    street: Line | None = None
    city: ShortLine | None = None
    postal_code: ShortLine | None = None
    country: ShortLine | None = None

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"
