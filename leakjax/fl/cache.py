"""The FedAvg results an interrupted run resumes from (``--resume``): plain nested dicts of
arrays in msgpack (no pickle)."""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
from flax import serialization

from leakjax.fl.client import ClientHParams
from leakjax.fl.observation import GroundTruth, Observation, to_host


def save(path, variables, history, observations, truths) -> None:
    """FL results for --resume: plain nested dicts of arrays in msgpack (no pickle)."""
    payload = {
        "variables": to_host(variables),
        "history": np.frombuffer(json.dumps(history).encode(), np.uint8),
        "n": np.int64(len(observations)),
    }
    for i, (o, t) in enumerate(zip(observations, truths, strict=True)):
        payload[f"obs_{i}"] = {
            "variables": o.variables,
            "update": o.update,
            "variables_after": o.variables_after if o.variables_after is not None else {},
            "lr": np.float32(o.hp.lr),
            "momentum": np.float32(o.hp.momentum),
            "weight_decay": np.float32(o.hp.weight_decay),
            "epochs": np.int64(o.hp.epochs),
            "batch_size": np.int64(o.hp.batch_size),
            "num_samples": np.int64(o.num_samples),
            "round": np.int64(o.round),
            "client_id": np.int64(o.client_id),
            "group_sizes": np.asarray(o.group_sizes or (), np.int64),
            "mode": np.frombuffer(o.mode.encode(), np.uint8),
            "images": np.asarray(t.images),
            "labels": np.asarray(t.labels),
            "owners": np.asarray([] if t.owners is None else t.owners, np.int64),
        }
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(serialization.msgpack_serialize(jax.tree.map(np.asarray, payload)))
    tmp.replace(path)


def load(path):
    raw = serialization.msgpack_restore(pathlib.Path(path).read_bytes())
    history = json.loads(bytes(np.asarray(raw["history"])).decode())
    observations, truths = [], []
    for i in range(int(raw["n"])):
        r = raw[f"obs_{i}"]
        hp = ClientHParams(
            lr=float(r["lr"]),
            momentum=float(r["momentum"]),
            weight_decay=float(r["weight_decay"]),
            epochs=int(r["epochs"]),
            batch_size=int(r["batch_size"]),
        )
        observations.append(
            Observation(
                variables=r["variables"],
                update=r["update"],
                variables_after=r["variables_after"] or None,
                hp=hp,
                mode=bytes(np.asarray(r["mode"])).decode(),
                num_samples=int(r["num_samples"]),
                round=int(r["round"]),
                client_id=int(r["client_id"]),
                group_sizes=tuple(int(v) for v in np.asarray(r.get("group_sizes", []))),
            )
        )
        owners = np.asarray(r.get("owners", np.zeros((0,), np.int64)))
        truths.append(
            GroundTruth(
                images=np.asarray(r["images"]),
                labels=np.asarray(r["labels"]),
                owners=owners if owners.size else None,
            )
        )
    return raw["variables"], history, observations, truths
