"""Nested training state <-> JSON plus a flat dict of tensors, so checkpoints need no pickle.

``flatten`` replaces every tensor in a tree of dicts, lists, tuples, numbers,
strings, booleans and None by ``{"__tensor__": name}`` and collects the
tensors under those names (``optimizer/state/0/exp_avg``); the tensors go to
safetensors, the rest to JSON. Dicts whose keys are not all strings (an
optimizer's ``state`` is keyed by int) and tuples are tagged so that
``unflatten`` rebuilds exactly the same tree.
"""

from __future__ import annotations

import io
import json

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

TENSOR, TUPLE, ITEMS = "__tensor__", "__tuple__", "__items__"
_TAGS = (TENSOR, TUPLE, ITEMS)


def flatten(tree, prefix: str = "") -> tuple[object, dict[str, torch.Tensor]]:
    """``(json_tree, tensors)`` for ``tree``; tensor names are the paths joined by ``/``."""
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()

    def walk(node, path: str):
        if isinstance(node, torch.Tensor):
            if path in tensors:
                raise ValueError(f"two tensors would be saved under the name {path!r}")
            tensor = node.detach().cpu().contiguous()
            storage = tensor.untyped_storage().data_ptr()
            if storage in storages:  # tied weights or views: safetensors stores each tensor on its own
                tensor = tensor.clone()
            storages.add(tensor.untyped_storage().data_ptr())
            tensors[path] = tensor
            return {TENSOR: path}
        if isinstance(node, dict):
            if all(isinstance(key, str) for key in node):
                if len(node) == 1 and next(iter(node)) in _TAGS:
                    raise ValueError(f"the key {next(iter(node))!r} at {path!r} is reserved by the checkpoint format")
                return {key: walk(value, f"{path}/{key}" if path else key) for key, value in node.items()}
            return {ITEMS: [[walk(key, f"{path}/key{i}"), walk(value, f"{path}/{key}")]
                            for i, (key, value) in enumerate(node.items())]}
        if isinstance(node, tuple):
            return {TUPLE: [walk(value, f"{path}/{i}") for i, value in enumerate(node)]}
        if isinstance(node, list):
            return [walk(value, f"{path}/{i}") for i, value in enumerate(node)]
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot save a {type(node).__name__} at {path!r} without pickle; use tensors, numbers, "
                        f"strings, lists and dicts")

    return walk(tree, prefix), tensors


def unflatten(json_tree, tensors: dict[str, torch.Tensor]):
    """The inverse of :func:`flatten`; a missing tensor raises ``KeyError`` naming it."""

    def walk(node):
        if isinstance(node, dict):
            if len(node) == 1 and TENSOR in node:
                name = node[TENSOR]
                if name not in tensors:
                    raise KeyError(f"tensor {name!r} is listed in the JSON but missing from the tensor file")
                return tensors[name]
            if len(node) == 1 and TUPLE in node:
                return tuple(walk(value) for value in node[TUPLE])
            if len(node) == 1 and ITEMS in node:
                return {walk(key): walk(value) for key, value in node[ITEMS]}
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node

    return walk(json_tree)


def to_bytes(tree) -> bytes:
    """One blob for a small tree (e.g. a rank's RNG states sent to rank 0): JSON length, JSON, safetensors."""
    json_tree, tensors = flatten(tree)
    header = json.dumps(json_tree).encode()
    return len(header).to_bytes(8, "little") + header + save_tensors(tensors)


def from_bytes(blob: bytes):
    stream = io.BytesIO(blob)
    size = int.from_bytes(stream.read(8), "little")
    json_tree = json.loads(stream.read(size))
    return unflatten(json_tree, load_tensors(stream.read()))
