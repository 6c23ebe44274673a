"""The repository port the matcher reads candidates through; `crm` implements it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from matching.model import ClientCandidate, Identity, LeadRef


class CandidateRepository(Protocol):
    async def clients_by_identities(
        self, identities: Sequence[Identity]
    ) -> Sequence[ClientCandidate]:
        """Contacts and companies holding any of the identities (or linked to a lead that does),
        plus the company of each such contact (with empty `matched_by` and its contact's
        `hit_order`), each with its open deals (newest activity first) and open repeat leads
        filled in, `matched_by` and `hit_order` set."""
        ...

    async def leads_by_identities(
        self, identities: Sequence[Identity], include_closed: bool
    ) -> Sequence[LeadRef]:
        """Leads whose own communications hold any identity; newest modification first."""
        ...
