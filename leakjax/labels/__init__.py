"""Label inference from gradients and FedAvg updates."""

from leakjax.labels.idlg import idlg_label

__all__ = ["idlg_label"]
