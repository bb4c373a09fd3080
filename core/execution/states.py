"""The one mapping from what a venue says about a transfer to the ledger's transfer state.

Two vocabularies, on purpose: the venue reports what *its* records show
(:class:`core.venues.reports.VenueTransferStatus`, "the venue's status"), the ledger records
what *we* know of one leg (:class:`core.ledger.vocab.TransferState`, "the ledger's state", which also has
states no venue reports: ``pending`` before the request leaves, ``refused`` by a gate). Every
receipt and every lookup goes through :func:`ledger_state_of`, so no caller maps them its own
way.

==================  ==================  ==============================================
venue status        ledger state        why
==================  ==================  ==============================================
``pending``         ``sent``            accepted, not yet credited: look again later
``confirmed``       ``confirmed``       credited to the destination wallet
``failed``          ``failed``          the venue says it failed; funds stayed at origin
``not_found_yet``   ``unknown``         no record yet, the lookup window is still open:
                                        look again later, never resend
``not_found``       ``failed``          no record and the window has closed. Proof of
                                        absence only when it holds over three reads 10 s
                                        apart after the window: the executor then resends
                                        under the **same key**, and records ``failed``
                                        only once its resends are exhausted
``ambiguous``       ``unknown``         several unclaimed records match: a human decides;
                                        never resent
==================  ==================  ==============================================

Examples
--------
>>> from core.venues.reports import VenueTransferStatus
>>> ledger_state_of(VenueTransferStatus.PENDING)
<TransferState.SENT: 'sent'>
"""

from __future__ import annotations

from typing import assert_never

from core.ledger.vocab import TransferState
from core.venues.reports import VenueTransferStatus

__all__ = ["ledger_state_of"]


def ledger_state_of(status: VenueTransferStatus) -> TransferState:
    """The ledger state a leg takes when its venue reports ``status`` (table above)."""
    match status:
        case VenueTransferStatus.PENDING:
            return TransferState.SENT
        case VenueTransferStatus.CONFIRMED:
            return TransferState.CONFIRMED
        case VenueTransferStatus.FAILED | VenueTransferStatus.NOT_FOUND:
            return TransferState.FAILED
        case VenueTransferStatus.NOT_FOUND_YET | VenueTransferStatus.AMBIGUOUS:
            return TransferState.UNKNOWN
        case _:
            assert_never(status)
