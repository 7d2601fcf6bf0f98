"""A contact: the person an opportunity sells to; letters use its name and address."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from sales.process import Identifier

Name = Field(min_length=1, max_length=200)


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    contact_id: Identifier
    first_name: str = Name
    last_name: str = Name
    email: EmailStr | None = None
    street: str | None = Field(default=None, max_length=500)
    city: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, max_length=40)
    country: str | None = Field(default=None, max_length=100)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"
