"""The malicious-client hook of `leakjax.fl.server.simulate` (``client_override``).

`ClientOverride` is the whole contract; `simulate` calls it host-side:

- ``client_id``: the client it replaces (0 <= client_id < the number of clients). Its data do
  not enter the batch-size check.
- ``update(round, global_vars, hp, x_u8, y, n, key) -> (variables_after, weight)``: in each
  round (0-based) that selects ``client_id``, with the round's `ClientHParams`, that client's
  padded uint8 data, its sample count and the key it would train with. The honest clients
  train as usual with its sample count set to 0 (its slot is left out of their mean and
  training loss) and the new global model is ``(n_h * honest_mean + weight *
  variables_after) / (n_h + weight)``, ``n_h`` the honest sample total (the old global model
  when both are 0).
- ``after_round(point, global_before, global_after) -> dict``: at every evaluation point (0:
  the initial model, before = after; r + 1: after round r); its entries (JSON values) are
  appended to the history under their keys.

Observations of that client would be of honest training: attack it with
``attack_rounds=()``. Client-side attacks (`leakjax.client_attack`) plug in through an
adapter that writes their per-round outputs.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from leakjax.fl.client import ClientHParams


@runtime_checkable
class ClientOverride(Protocol):
    """A malicious client in `simulate` (the contract: this module's docstring)."""

    client_id: int

    def update(
        self,
        round: int,
        global_vars: Any,
        hp: ClientHParams,
        x_u8,
        y,
        n: int,
        key,  # noqa: A002
    ) -> tuple[Any, float]: ...

    def after_round(self, point: int, global_before: Any, global_after: Any) -> dict: ...
